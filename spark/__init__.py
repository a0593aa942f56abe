"""Spark side of payment-analysis: the Lakeflow ETL pipeline, batch jobs and Spark adapters of the
decision core. Runs on local Spark 4.2 + Delta and unchanged on Databricks."""
