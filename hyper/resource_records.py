"""The resource kinds only admin commands, provisioning and qsub's checks read: regions, images, clusters and
job definitions. Imported through hyper.models on first use (``from hyper.models import Cluster`` works as
before): every dataclass costs about a millisecond to create, and qstat, qdel and qlog never touch these
(issue 15's cold start). Queues stay in hyper.models: opening a local store reads the default queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hyper.records import Resource

@dataclass
class Region(Resource):
    """An AWS region the host may run workers in; the main region holds the host's tables and queues."""

    KIND: ClassVar[str] = "region"
    main: bool = False
    vpc_cidr: str = ""
    vpc_id: str = ""
    subnets: list[str] = field(default_factory=list)
    vpc_endpoints: bool = False
    route_tables: list[str] = field(default_factory=list)  # existing VPC: where S3/DynamoDB gateway endpoints go


@dataclass
class Image(Resource):
    """A worker image: built from a directory, or an existing URI; replicated to every enabled region."""

    KIND: ClassVar[str] = "image"
    path: str = ""
    uri: str = ""
    # built images: the tag of the last build (its context's content hash; tags are immutable) and the digest
    # every region's job definition pins (hyper/aws/ecr.py)
    tag: str = ""
    digest: str = ""


@dataclass
class Cluster(Resource):
    KIND: ClassVar[str] = "cluster"
    type: str = "local"  # local | batch | eks
    max_vcpus: int = 0
    min_vcpus: int = 0
    instance_types: list[str] = field(default_factory=list)
    gpus_per_instance: int = 0
    spot: bool = False
    allocation_strategy: str = ""
    regions: list[str] = field(default_factory=list)
    overrides: dict[str, dict] = field(default_factory=dict)  # region -> {max_vcpus: .., instance_types: ..}
    eks_cluster: str = ""  # eks: the EKS cluster's name (the same in every region the hyper cluster spans)
    namespace: str = ""  # eks: where worker Jobs go (default hyper)
    kubeconfig: str = ""  # eks: kubeconfig file (default: $KUBECONFIG, ~/.kube/config)
    context: str = ""  # eks: kubeconfig context (default: the file's current context)
    template: str = ""  # eks: a Jinja2 Job template replacing the packaged one
    create_eks: bool = False  # eks: provisioning also creates the EKS cluster and a GPU node group
    # batch: which compute environment the stacks hold. 0: made before hyper used Batch's service-linked role
    # (a custom service role: no in-place infrastructure updates); 1: the first with the service-linked role;
    # each replacement (hyper.aws.templates.environment_generation) takes the next number and a new name
    environment_generation: int = 0


@dataclass
class Definition(Resource):
    KIND: ClassVar[str] = "definition"
    image: str = "local"
    vcpus: int = 1
    memory_mib: int = 1024
    gpus: int = 0
    timeout: int | None = None  # seconds; a job's own walltime may only be shorter
    retries: int = 0
    retry_on: str = "infra"  # what the default retries cover: infra (lost workers) or all (non-zero exits too)
    ratio: int = 1  # jobs per worker: N queued jobs want ceil(N / ratio) workers
    environment: dict[str, str] = field(default_factory=dict)
    job_role: str = ""  # IAM role ARN each job assumes (hyper/worker/credentials.py); "" = no AWS rights
    secrets: dict[str, str] = field(default_factory=dict)  # env NAME -> Secrets Manager / SSM parameter ARN
