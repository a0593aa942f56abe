"""payments_core: the shared decision core and event contract.

Imported by the simulator, the stream processor, the scoring API, the control plane and the
Spark jobs. It imports no service and no pyspark; Spark adapters live with the Spark jobs.
"""
