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
"""
