"""What the warehouse tables hold: the OLTP columns copied, and the SQL of computed tables."""

USER_COLUMNS = ["user_id", "joined_at", "follower_count"]
PHOTO_COLUMNS = ["photo_id", "user_id", "uploaded_at", "caption", "object_key"]

ENGAGEMENT_SQL = """
CREATE OR REPLACE TABLE warehouse.photo_engagement_daily AS
SELECT
    photo_id,
    CAST(ts AS DATE) AS event_date,
    count(*) FILTER (WHERE event_type = 'view') AS views,
    count(*) FILTER (WHERE event_type = 'like') AS likes,
    count(*) FILTER (WHERE event_type = 'comment') AS comments,
    count(*) FILTER (WHERE event_type = 'share') AS shares,
    count(DISTINCT user_id) AS unique_users,
    avg(dwell_ms) FILTER (WHERE event_type = 'view') AS avg_dwell_ms
FROM warehouse.events
GROUP BY photo_id, CAST(ts AS DATE)
ORDER BY event_date, photo_id
"""
