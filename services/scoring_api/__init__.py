"""Scoring API: POST /score decides one transaction synchronously with the shared decision core;
GET /decisions/{id} serves what the stream processor published (a faust-streaming agent consumes
``payments.decisions`` into Redis). See ``app`` (HTTP), ``consumer`` (Kafka -> Redis), ``__main__`` (CLI).
"""
