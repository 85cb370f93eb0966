"""LSF front-ends (bsub, bjobs, bkill, bpeek) over hyper's job services, for tools that drive LSF
(dask-jobqueue's LSFCluster, Parsl's LSFProvider). Installed only on request, by `hyper shims install DIR`,
so they never shadow a real LSF."""
