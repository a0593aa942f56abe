"""Gold materialized views: every ``materialized`` dataset of the registry ``spark.etl.gold``."""
from pyspark import pipelines as dp

from spark.etl.gold import MATERIALIZED


def _define(dataset):
    @dp.materialized_view(name=dataset.name, comment=dataset.description)
    def query():
        return spark.sql(dataset.render())  # noqa: F821 - `spark` is injected by the pipeline runtime


for _dataset in MATERIALIZED:
    _define(_dataset)
