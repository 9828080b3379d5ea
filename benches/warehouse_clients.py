#!/usr/bin/env python3
"""The emulators' native clients, for benches/warehouses.py: the reference load of each case,
and every output read back whole into a Parquet file that the benchmark checks by content.

    warehouse_clients.py snowflake-setup URL                   create the database BENCH
    warehouse_clients.py snowflake-load  URL TABLE PARQUET     PUT + COPY INTO with snowflake-connector-python
    warehouse_clients.py snowflake-dump  URL TABLE OUT         SELECT * into the Parquet file OUT
    warehouse_clients.py bigquery-load   URL PROJECT DATASET TABLE NDJSON   load job with google-cloud-bigquery
    warehouse_clients.py bigquery-dump   URL PROJECT DATASET TABLE OUT      tabledata.list into OUT

Runs in the benchmark's own virtual environment (warehouses.py creates it). Tables live in
the database BENCH (schema PUBLIC) on fakesnow and in DATASET on bigquery-emulator.
"""

from __future__ import annotations

import sys
from urllib.parse import urlparse

LINEITEM = [
    ("l_orderkey", "NUMBER(19,0)", "INT64"), ("l_partkey", "NUMBER(19,0)", "INT64"),
    ("l_suppkey", "NUMBER(19,0)", "INT64"), ("l_linenumber", "NUMBER(19,0)", "INT64"),
    ("l_quantity", "NUMBER(15,2)", "NUMERIC"), ("l_extendedprice", "NUMBER(15,2)", "NUMERIC"),
    ("l_discount", "NUMBER(15,2)", "NUMERIC"), ("l_tax", "NUMBER(15,2)", "NUMERIC"),
    ("l_returnflag", "VARCHAR", "STRING"), ("l_linestatus", "VARCHAR", "STRING"),
    ("l_shipdate", "DATE", "DATE"), ("l_commitdate", "DATE", "DATE"), ("l_receiptdate", "DATE", "DATE"),
    ("l_shipinstruct", "VARCHAR", "STRING"), ("l_shipmode", "VARCHAR", "STRING"), ("l_comment", "VARCHAR", "STRING"),
]  # fmt: skip


def snowflake(url: str):
    import snowflake.connector

    u = urlparse(url)
    conn = snowflake.connector.connect(
        user="bench", password="bench", account="bench", host=u.hostname, port=u.port, protocol=u.scheme,
        database="BENCH", schema="PUBLIC",
    )  # fmt: skip
    cur = conn.cursor()
    cur.execute("CREATE DATABASE IF NOT EXISTS BENCH")
    cur.execute("CREATE SCHEMA IF NOT EXISTS BENCH.PUBLIC")
    return cur


def bigquery(url: str, project: str):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery as bq

    return bq.Client(project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=url))


def write_parquet(table, out: str) -> None:
    """The rows as read, with lower-case column names (Snowflake answers in upper case) and no
    field metadata, for DuckDB to compare with the input."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field(f.name.lower(), f.type) for f in table.schema]
    pq.write_table(pa.Table.from_arrays(table.columns, schema=pa.schema(fields)), out)


def main(argv: list[str]) -> int:
    what = argv[1] if len(argv) > 1 else ""
    if what == "snowflake-load":
        url, table, parquet = argv[2:5]
        cur = snowflake(url)
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, t, _ in LINEITEM)})")
        cur.execute(f"PUT file://{parquet} @%{table} AUTO_COMPRESS=FALSE")
        cur.execute(f"COPY INTO {table} FROM @%{table} FILE_FORMAT=(TYPE=PARQUET) MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE")
        return 0
    if what == "snowflake-setup":
        snowflake(argv[2])
        return 0
    if what == "snowflake-dump":
        url, table, out = argv[2:5]
        cur = snowflake(url)
        cur.execute(f"SELECT * FROM {table}")
        write_parquet(cur.fetch_arrow_all(), out)
        return 0
    if what == "bigquery-load":
        import os

        import google.cloud.bigquery.client as bq_client
        from google.cloud import bigquery as bq

        url, project, dataset, table, ndjson = argv[2:7]
        # The client uploads a file in chunks of 100 MiB; bigquery-emulator v0.6.6 parses each
        # chunk as a whole file (a second one fails: "json: string unexpected end of JSON
        # input"), so the file goes up as one chunk (a multiple of 256 KiB, as uploads want).
        quantum = 256 * 1024
        whole = (os.path.getsize(ndjson) // quantum + 1) * quantum
        bq_client._DEFAULT_CHUNKSIZE = max(bq_client._DEFAULT_CHUNKSIZE, whole)
        client = bigquery(url, project)
        client.delete_table(f"{project}.{dataset}.{table}", not_found_ok=True)
        config = bq.LoadJobConfig(
            source_format=bq.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=[bq.SchemaField(n, t) for n, _, t in LINEITEM],
            write_disposition="WRITE_APPEND",
        )
        with open(ndjson, "rb") as f:
            client.load_table_from_file(f, f"{project}.{dataset}.{table}", job_config=config).result()
        return 0
    if what == "bigquery-dump":
        url, project, dataset, table, out = argv[2:7]
        rows = bigquery(url, project).list_rows(f"{project}.{dataset}.{table}", page_size=50_000)
        write_parquet(rows.to_arrow(create_bqstorage_client=False), out)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
