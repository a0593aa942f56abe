"""Stream processor: Spark Structured Streaming from ``payments.transactions`` through the shared
decision core to ``payments.decisions`` (+ DLQ), with a Delta decision log and one-minute metrics."""
