# One image for every role: web (default), worker and dispatcher (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LEADORCH_VAR_DIR=/var/lib/leadorch
WORKDIR /app

COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir -e . && useradd --system --home /app leadorch && mkdir -p /var/lib/leadorch && chown leadorch /var/lib/leadorch
COPY . .
RUN DATABASE_URL=postgres://build@localhost/build SECRET_KEY=build python manage.py collectstatic --noinput

USER leadorch
EXPOSE 8000
CMD ["python", "-m", "leadorch.web", "-b", "0.0.0.0", "-p", "8000", "leadorch.asgi:application"]
