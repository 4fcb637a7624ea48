"""Scale-out tests: the asset graph on PostgreSQL, S3, Redis and celery workers (issue 18).

Test infrastructure (see each module for why):

* :mod:`.servers`: ``PostgresServer``, ``RedisServer``, ``MotoS3``, ``MongodServer``: context
  managers for real servers on 127.0.0.1 (free port, private temp folder, log file, readiness
  by connecting, stop and cleanup on any exit; a missing binary raises
  ``ServerBinaryMissingError`` naming what to install).
* :mod:`.conftest`: session fixtures ``postgres_server``, ``redis_server``, ``moto_s3``,
  ``mongod_server``, ``lakefs_test_server``; per-test ``pg_database`` (a DSN) and
  ``s3_bucket`` (a name).
* :mod:`.workers`: ``CeleryWorker`` / ``celery_workers``: ``dagster-celery`` workers with
  their own HOME, TMPDIR, MDP_DATA_DIR and DAGSTER_HOME; ``write_dagster_home`` and
  ``celery_execution_config`` for the shared configuration.
* :mod:`.celery_job`: a two-op job that reports where each step ran.
* :mod:`.production`: ``Production`` (the production profile's variables on those servers,
  ``host_env``, ``mdp``), ``webserver_and_daemon`` (dagster-webserver and a 1 s dagster-daemon
  on PostgreSQL storage, every sensor and schedule stopped first).
* :mod:`.fingerprints`: per table and dataset file, row count and sha256 of the rows sorted
  (floats rounded to 1e-6); run as a module in a profile's environment.
* :mod:`.test_distributed`: the whole graph on the production profile equals the embedded
  profile on the same seed; a worker killed mid-step; a rerun without duplicates.
"""
