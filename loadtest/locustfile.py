"""The crowd of a drop, as Locust users: journeys a real crowd makes against `allot serve`.

Each simulated customer takes one access token (one verified account) from the file named by
ALLOT_TOKENS (one token a line, as `setup_users.py` writes it) and then, with think times
between steps, mixes these journeys:

- browse: the catalog, a product, its stock;
- wishlist: put a product on it, read it, sometimes take it off;
- watch: open the stock stream of the drop, read its first event, leave;
- buy: place an order (an Idempotency-Key of its own), then pay with the approving card, or
  pay with a declined card first and retry with the approving one, or cancel, or walk away
  (the hold expires by itself);
- orders: read their orders and one order.

A refusal the shop promises under load (sold out, over the per-customer limit, the sale not
open or closed) is a success of the journey, not an error: only an answer the API does not
document for the request, or a transport error, fails. The drop is ALLOT_DROP (a product id);
without it the first product on sale is used.

    ALLOT_TOKENS=tokens.txt locust -f loadtest/locustfile.py --headless -u 200 -r 50 -t 60s \\
        --host http://127.0.0.1:8080

`bash loadtest/run.sh` sets up a shop and runs it (`--smoke` for the few seconds CI runs).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import uuid

from locust import HttpUser, between, events, task

APPROVED = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"
ADDRESS = {
    "recipient": "Kim Min-ji",
    "phone": "+82 10-1234-5678",
    "line1": "152 Teheran-ro, Gangnam-gu",
    "city": "Seoul",
    "postal_code": "06236",
    "country": "KR",
}
# Refusals the API documents for a placement under a crowd: the journey goes on.
PLACEMENT_REFUSALS = {"sold_out", "purchase_limit_exceeded", "sale_not_open", "sale_closed"}
PAYMENT_REFUSALS = {"payment_declined", "order_expired", "invalid_transition"}

_tokens_lock = threading.Lock()
_tokens: itertools.cycle | None = None


def _next_token() -> str:
    global _tokens
    with _tokens_lock:
        if _tokens is None:
            path = os.environ.get("ALLOT_TOKENS")
            if not path:
                raise SystemExit("set ALLOT_TOKENS to a file of access tokens, one a line")
            with open(path, encoding="utf-8") as f:
                tokens = [line.strip() for line in f if line.strip()]
            if not tokens:
                raise SystemExit(f"{path} holds no token")
            _tokens = itertools.cycle(tokens)
        return next(_tokens)


def _problem_type(response) -> str:
    try:
        return response.json().get("type", "")
    except ValueError:
        return ""


class Customer(HttpUser):
    """One customer of the drop."""

    wait_time = between(0.2, 1.5)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {_next_token()}"
        self.drop = os.environ.get("ALLOT_DROP") or self._first_on_sale()
        if os.environ.get("ALLOT_SMOKE"):
            # A smoke run is a few seconds: every journey once first, so none is left to chance.
            self.browse()
            self.wishlist()
            self.watch()
            self.buy()
            self.orders()

    def _first_on_sale(self) -> str:
        with self.client.get(
            "/api/v1/products?status=on_sale", name="/products?status", catch_response=True
        ) as listed:
            items = listed.json().get("items", []) if listed.status_code == 200 else []
            if not items:
                listed.failure("no product is on sale; set ALLOT_DROP")
                return "prd_1"
            return items[0]["id"]

    def _expect(self, response, ok: set[int], refusals: set[str] = frozenset()) -> bool:
        """Marks the answer: a status in `ok` succeeds, a documented refusal in `refusals` too
        (answering False), anything else fails."""
        if response.status_code in ok:
            response.success()
            return True
        kind = _problem_type(response)
        if kind in refusals:
            response.success()
            return False
        response.failure(f"{response.status_code} {kind or response.text[:200]}")
        return False

    # ----- journeys ----------------------------------------------------------------------

    @task(4)
    def browse(self) -> None:
        with self.client.get("/api/v1/products", catch_response=True) as page:
            self._expect(page, {200})
        with self.client.get(
            f"/api/v1/products/{self.drop}", name="/products/{id}", catch_response=True
        ) as product:
            self._expect(product, {200})
        with self.client.get(
            f"/api/v1/products/{self.drop}/stock", name="/products/{id}/stock", catch_response=True
        ) as stock:
            self._expect(stock, {200})

    @task(1)
    def wishlist(self) -> None:
        with self.client.put(
            f"/api/v1/me/wishlist/{self.drop}",
            json={"quantity": 1, "note": "size 270"},
            name="/me/wishlist/{id}",
            catch_response=True,
        ) as put:
            self._expect(put, {200, 201})
        with self.client.get("/api/v1/me/wishlist", catch_response=True) as read:
            self._expect(read, {200})
        if random.random() < 0.3:
            with self.client.delete(
                f"/api/v1/me/wishlist/{self.drop}", name="/me/wishlist/{id}", catch_response=True
            ) as removed:
                self._expect(removed, {200, 204})

    @task(1)
    def watch(self) -> None:
        with self.client.get(
            f"/api/v1/products/{self.drop}/stock/stream",
            name="/products/{id}/stock/stream",
            stream=True,
            timeout=10,
            catch_response=True,
        ) as stream:
            if stream.status_code != 200:
                self._expect(stream, {200})
                return
            for line in stream.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    stream.success()
                    break
            else:
                stream.failure("the stream ended before its first event")

    @task(3)
    def buy(self) -> None:
        key = str(uuid.uuid4())
        body = {"items": [{"product_id": self.drop, "quantity": 1}], "shipping_address": ADDRESS}
        with self.client.post(
            "/api/v1/orders", json=body, headers={"Idempotency-Key": key}, catch_response=True
        ) as placed:
            if not self._expect(placed, {201}, PLACEMENT_REFUSALS):
                return
            order = placed.json()["id"]
        choice = random.random()
        if choice < 0.5:
            self._pay(order, APPROVED)
        elif choice < 0.7:
            if not self._pay(order, DECLINED):
                self._pay(order, APPROVED)
        elif choice < 0.85:
            with self.client.post(
                f"/api/v1/orders/{order}/cancel",
                json={},
                name="/orders/{id}/cancel",
                catch_response=True,
            ) as cancelled:
                self._expect(cancelled, {200}, {"not_cancellable", "payment_in_progress"})
        # else: walks away; the hold expires by itself.

    def _pay(self, order: str, card: str) -> bool:
        with self.client.post(
            f"/api/v1/orders/{order}/payment",
            json={"card_number": card, "expiry": "12/30", "cvc": "123"},
            name="/orders/{id}/payment",
            catch_response=True,
        ) as paid:
            return self._expect(paid, {200}, PAYMENT_REFUSALS)

    @task(2)
    def orders(self) -> None:
        with self.client.get("/api/v1/orders", catch_response=True) as listed:
            if not self._expect(listed, {200}):
                return
            items = listed.json().get("items", [])
        if items:
            with self.client.get(
                f"/api/v1/orders/{items[0]['id']}", name="/orders/{id}", catch_response=True
            ) as one:
                self._expect(one, {200})


@events.quitting.add_listener
def _fail_on_errors(environment, **_kwargs) -> None:
    """Exit non-zero when any request failed (what CI's smoke run checks)."""
    if environment.stats.total.num_failures > 0:
        environment.process_exit_code = 1
