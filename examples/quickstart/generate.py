#!/usr/bin/env python3
"""Writes the quickstart's deterministic data set: customers and two months of orders, plus a
third month in extra/ to copy in and watch an incremental run move only the new rows."""
import csv
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).parent
COUNTRIES = ["DE", "FR", "NL", "PL", "ES", "IT", "SE", "AT"]
FIRST = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen", "Dijkstra"]
STATUSES = ["paid"] * 6 + ["shipped"] * 3 + ["refunded", "test"]


def customers(rng: random.Random) -> None:
    with open(HERE / "data" / "customers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "name", "email", "country", "signup_date"])
        for cid in range(1, 501):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            signup = datetime(2022, 1, 1) + timedelta(days=rng.randrange(730))
            w.writerow([cid, f"{first} {last}", f"{first}.{last}{cid}@example.com".lower(), rng.choice(COUNTRIES), signup.date().isoformat()])


def orders(rng: random.Random, path: Path, month: int, first_id: int, count: int) -> None:
    start = datetime(2024, month, 1, tzinfo=timezone.utc)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "customer_id", "status", "total", "currency", "created_at", "updated_at"])
        for i in range(count):
            created = start + timedelta(seconds=rng.randrange(27 * 86400))
            updated = created + timedelta(minutes=rng.randrange(600))
            total = f"{rng.randrange(500, 50000) / 100:.2f}"
            w.writerow([first_id + i, rng.randrange(1, 501), rng.choice(STATUSES), total, "EUR",
                        created.isoformat().replace("+00:00", "Z"), updated.isoformat().replace("+00:00", "Z")])


def main() -> None:
    rng = random.Random(20240101)
    customers(rng)
    orders(rng, HERE / "data" / "orders" / "orders-2024-01.csv", 1, 100001, 2500)
    orders(rng, HERE / "data" / "orders" / "orders-2024-02.csv", 2, 102501, 2500)
    orders(rng, HERE / "extra" / "orders-2024-03.csv", 3, 105001, 1000)


if __name__ == "__main__":
    main()
