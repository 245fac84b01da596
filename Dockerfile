# The image both `tenantry serve` and `tenantry worker` run from (deploy/ uses it).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --system --uid 10001 --home-dir /data tenantry \
    && mkdir -p /data && chown tenantry /data
USER 10001
ENV TENANTRY_DATA_DIR=/data TENANTRY_HOST=0.0.0.0 TENANTRY_PORT=5000
EXPOSE 5000
# exec form: the process gets SIGTERM itself (uvicorn drains, the worker finishes jobs)
CMD ["tenantry", "serve"]
