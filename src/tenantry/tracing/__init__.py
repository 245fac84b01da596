"""OpenTelemetry tracing: off unless the standard OTEL_* variables switch it on.

Off, nothing here imports opentelemetry and each traced place pays one attribute
check (`service.tracing is None`). On (`tenantry.wiring.tracing`), one `Tracing`
(tracer.py) is handed to the services that make spans: the HTTP middleware
(middleware.py), the job service (a CONSUMER span per run, its parent carried in the
job's options as Node's bullmq-otel carries it), the storage service (`traced`), the
query monitor (a span per statement) and the flag service (`feature_flag.evaluation`
events). docs/tracing.md lists every span, attribute and event.

Only tracer.py, provider.py and flag_events.py import opentelemetry.
"""
