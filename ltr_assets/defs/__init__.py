"""The Dagster wiring of the code location (the only part of ltr_assets that imports Dagster):
partitions, resources, assets, checks, jobs, schedules and sensors, each a thin layer over the
domain modules beside this package. `ltr_assets.definitions` assembles them."""
