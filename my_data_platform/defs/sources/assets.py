"""What lands from outside the platform: event logs, images and the app's OLTP tables.

These are external assets: Dagster does not produce them, it only knows they exist, so the
lineage in the UI starts where the data really comes from.
"""

import dagster as dg

from my_data_platform.defs.partitions import event_days

landing_events = dg.AssetSpec(
    key=["landing", "events"],
    group_name="sources",
    partitions_def=event_days,
    kinds={"s3", "json"},
    description=(
        "User-activity logs (views, likes, comments, shares) as gzip JSON Lines, one folder per "
        "landing day under `landing/events/date=YYYY-MM-DD/` in the object store. "
        "The raw record of how people engage with photos: the source of features and labels."
    ),
)

landing_photos = dg.AssetSpec(
    key=["landing", "photos"],
    group_name="sources",
    kinds={"s3", "jpeg"},
    description=(
        "Uploaded photo files under `landing/photos/` in the object store. Payloads live here; "
        "their metadata lives in the OLTP database."
    ),
)

oltp_users = dg.AssetSpec(
    key=["oltp", "users"],
    group_name="sources",
    kinds={"sqlite", "postgres"},
    description="The app's `users` table (OLTP): who posts and how many followers they have.",
)

oltp_photos = dg.AssetSpec(
    key=["oltp", "photos"],
    group_name="sources",
    kinds={"sqlite", "postgres"},
    description=(
        "The app's `photos` table (OLTP): caption, author, upload time and the object key of each "
        "image. The image itself is never stored in the database."
    ),
)

oltp_photo_annotations = dg.AssetSpec(
    key=["oltp", "photo_annotations"],
    group_name="sources",
    kinds={"sqlite", "postgres"},
    description=(
        "What annotators answered about each photo's content (`photo_annotations`: annotation, "
        "photo, annotator, label, time, source), from a labelling vendor or the team's own "
        "tool. Optional: a platform with no annotations still runs."
    ),
)

oltp_annotation_gold = dg.AssetSpec(
    key=["oltp", "annotation_gold"],
    group_name="sources",
    kinds={"sqlite", "postgres"},
    description=(
        "Gold items (`annotation_gold`): photos whose content label is known, slipped into the "
        "annotators' queue to measure each annotator and the consensus."
    ),
)

landing_annotations = dg.AssetSpec(
    key=["landing", "annotations"],
    group_name="sources",
    kinds={"s3", "json"},
    description=(
        "Label Studio JSON exports uploaded under `landing/annotations/` in the object store: "
        "the team's own annotations, imported like any other upload (limits, quarantine)."
    ),
)
