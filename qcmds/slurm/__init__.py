"""Slurm front-ends (sbatch, squeue, scancel, sacct) over hyper's job services, for tools that drive Slurm
(dask-jobqueue's SLURMCluster, Parsl's SlurmProvider, Snakemake). Installed only on request, by
`hyper shims install DIR`, so they never shadow a real Slurm."""
