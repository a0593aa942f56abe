"""Gold: the partial aggregates of silver (``spark.etl.gold_partials``), appended per update from the
new silver rows only; every gold dataset of the registry ``spark.etl.gold`` is a view over them (the
gold views job). Datasets of kind ``materialized`` (none at present) would be materialized views here."""

from pyspark import pipelines as dp

from spark.etl.gold import MATERIALIZED
from spark.etl.gold_partials import PARTIALS, partial_aggregates


@dp.table(
    name=PARTIALS,
    comment="Silver summed per update at every grain of the gold views (append-only; the gold views re-aggregate it)",
)
def gold_partials():
    return partial_aggregates(spark.readStream.table("silver_transactions"))  # `spark`: injected by the runtime


def _define(dataset):
    @dp.materialized_view(name=dataset.name, comment=dataset.description)
    def query():
        return spark.sql(dataset.render())


for _dataset in MATERIALIZED:
    _define(_dataset)
