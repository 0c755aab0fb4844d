# An image for operators: `docker build -t contactcard .` then
# `docker run -p 8000:8000 -v contactcard-data:/data contactcard`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CONTACTCARD_DATA_DIR=/data
WORKDIR /app
# The server's locked dependency tree first (hash-checked), in a layer of its own that is
# rebuilt only when the lock changes; then the project alone, with nothing resolved anew.
COPY requirements/runtime.txt ./requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps . && useradd --system --home /data contactcard \
    && mkdir -p /data && chown contactcard /data
USER contactcard
VOLUME /data
EXPOSE 8000
CMD ["contactcard", "serve", "--host", "0.0.0.0", "--port", "8000"]
