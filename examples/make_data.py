"""Regenerates the example data under examples/data (deterministic)."""

import csv
import random
import sqlite3
from pathlib import Path

HERE = Path(__file__).parent / "data"
HERE.mkdir(exist_ok=True)
rng = random.Random(42)
countries = ["NL", "DE", "FR", "US", "JP", "BR"]

rows = []
for i in range(1, 20_001):
    rows.append(
        (
            i,
            f"customer {rng.randint(1, 2_000)}",
            rng.choice(countries),
            round(rng.uniform(1, 500), 2),
            rng.randint(1, 9),
            f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00",
        )
    )

db = HERE / "shop.db"
db.unlink(missing_ok=True)
conn = sqlite3.connect(db)
conn.execute(
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, country TEXT NOT NULL,"
    " amount REAL NOT NULL, quantity INTEGER NOT NULL, created DATETIME NOT NULL)"
)
conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", rows)
conn.commit()
conn.execute("VACUUM")
conn.close()

with open(HERE / "orders.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "customer", "country", "amount", "quantity", "created"])
    w.writerows(rows[:5_000])
