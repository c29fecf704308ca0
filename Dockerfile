# The grid's Python services; docker-compose.yml runs one command of this image per service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# only what the package needs: the checkout's .venv and .grid (local Kafka/PostgreSQL state) stay out
# README.m[d]: the readme is optional for the build, and a glob may match nothing
COPY pyproject.toml README.m[d] ./
COPY core/ core/
COPY gridgov/ gridgov/
COPY schemas/ schemas/
COPY streams/ streams/
COPY sinks/ sinks/
COPY connectors/ connectors/
COPY dashboard/ dashboard/
COPY law/ law/
COPY agents/ agents/
RUN pip install . && useradd --create-home --uid 10001 grid

USER grid
CMD ["gridgov", "--help"]
