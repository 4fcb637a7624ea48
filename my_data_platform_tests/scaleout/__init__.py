"""Scale-out tests: the asset graph on PostgreSQL, S3, Redis and celery workers (issue 18)."""
