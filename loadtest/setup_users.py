#!/usr/bin/env python3
"""Creates many verified customers through the HTTP signup flow and writes their access tokens.

Made for load tests against a local `allot serve` that runs WITHOUT `--smtp-url` (so every mail is
an `.eml` file under `<data-dir>/mail/`) and with `--ip-rate-limit 0` (one client address sends
everything). Standard library only.

    python3 loadtest/setup_users.py --base http://127.0.0.1:PORT \\
        --mail-dir DATA_DIR/mail --users 2000 --out tokens.txt

Phases, each with bounded concurrency over keep-alive connections:
  1. POST /api/v1/auth/email-verifications for every address (202), in batches of --mail-batch:
     the server queues at most 1,024 mails and drops the next ones (still answering 202), so
     each batch's codes are read from the `.eml` files (matched by their To header) before the
     next batch is asked for; a mail missing anyway is asked for again after the resend cooldown;
  2. POST /auth/email-verifications/confirm, then POST /auth/signup (argon2: tens of ms each);
  3. POST /auth/login, last, so that the 15-minute access tokens are as fresh as possible.
The output file holds one access token per line (Bearer auth needs no CSRF token). 503
(`the password pool is busy`) and 429 answers are retried after a pause.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import email
import email.policy
import email.utils
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse

CODE_RE = re.compile(r"verification code is (\d{6})")
RETRY_STATUSES = {429, 503}


class Client:
    """One keep-alive HTTP/1.1 connection per thread."""

    def __init__(self, base: str, timeout: float) -> None:
        url = urllib.parse.urlsplit(base)
        if url.scheme != "http" or not url.hostname:
            raise SystemExit(f"--base must be an http:// URL, got {base!r}")
        self.host = url.hostname
        self.port = url.port or 80
        self.timeout = timeout
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.local.conn = conn
        return conn

    def post(self, path: str, body: dict, attempts: int = 30) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        delay = 0.05
        for attempt in range(attempts):
            conn = self._conn()
            try:
                conn.request("POST", path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self.local.conn = None
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt + 1 == attempts:
                    raise
                time.sleep(delay)
                continue
            if status in RETRY_STATUSES and attempt + 1 < attempts:
                retry_after = response.getheader("Retry-After")
                time.sleep(float(retry_after) if retry_after and retry_after.isdigit() else delay)
                delay = min(delay * 2, 1.0)
                continue
            try:
                answer = json.loads(raw) if raw else {}
            except ValueError:
                answer = {"raw": raw[:200].decode(errors="replace")}
            return status, answer
        raise RuntimeError("unreachable")


def expect(status: int, answer: dict, wanted: int, what: str) -> dict:
    if status != wanted:
        raise RuntimeError(f"{what}: expected {wanted}, got {status}: {answer}")
    return answer


def run_all(label: str, items: list, work, concurrency: int, quiet: bool = False) -> list:
    """Runs `work(item)` over `items` with `concurrency` threads; results in input order."""
    started = time.monotonic()
    results = [None] * len(items)
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(work, item): i for i, item in enumerate(items)}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()  # the first failure stops the setup
            done += 1
            if not quiet and (done % 250 == 0 or done == len(items)):
                elapsed = time.monotonic() - started
                print(f"  {label}: {done}/{len(items)} in {elapsed:.1f} s", file=sys.stderr)
    return results


class MailBox:
    """The `.eml` files of a server's mail directory, read once each: address -> latest code."""

    def __init__(self, mail_dir: str) -> None:
        self.mail_dir = mail_dir
        self.codes: dict[str, str] = {}
        self.seen: set[str] = set()

    def scan(self) -> None:
        try:
            names = sorted(n for n in os.listdir(self.mail_dir) if n.endswith(".eml") and n[0] != ".")
        except FileNotFoundError:
            names = []
        for name in names:
            if name in self.seen:
                continue
            self.seen.add(name)
            with open(os.path.join(self.mail_dir, name), "rb") as f:
                message = email.message_from_binary_file(f, policy=email.policy.default)
            to = email.utils.parseaddr(str(message.get("To", "")))[1].lower()
            part = message.get_body(preferencelist=("plain",))
            text = part.get_content() if part is not None else ""
            match = CODE_RE.search(text)
            if to and match:
                self.codes[to] = match.group(1)  # names sort by time: a later mail overrides

    def wait_for(self, wanted: set[str], timeout_s: float) -> set[str]:
        """Waits until every wanted address has a code, or the timeout; answers the missing."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.scan()
            missing = wanted - self.codes.keys()
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="e.g. http://127.0.0.1:8080")
    parser.add_argument("--mail-dir", required=True, help="<data-dir>/mail of that server")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--out", required=True, help="file for the access tokens, one a line")
    parser.add_argument("--concurrency", type=int, default=max(2, 2 * (os.cpu_count() or 2)))
    parser.add_argument("--prefix", default=f"buyer{os.getpid()}", help="local part prefix")
    parser.add_argument("--domain", default="bench.allot.test")
    parser.add_argument("--password", default="Drop-bench-2026!")
    parser.add_argument("--mail-timeout", type=float, default=60.0,
                        help="seconds to wait for one batch's mails")
    parser.add_argument("--mail-batch", type=int, default=250,
                        help="codes asked for at once (the server queues at most 1,024 mails)")
    args = parser.parse_args()
    if args.users < 1:
        parser.error("--users must be at least 1")
    if not 1 <= args.mail_batch <= 1000:
        parser.error("--mail-batch must be 1 to 1000")

    client = Client(args.base, timeout=60.0)
    api = "/api/v1"
    emails = [f"{args.prefix}-{i:05d}@{args.domain}".lower() for i in range(args.users)]
    started = time.monotonic()
    print(f"setup: {args.users} customers, concurrency {args.concurrency}", file=sys.stderr)

    def request_code(address: str) -> None:
        expect(*client.post(f"{api}/auth/email-verifications", {"email": address}), 202,
               f"email-verifications {address}")

    # The server queues at most 1,024 mails and drops (and logs) the next one while its queue is
    # full, still answering 202; each mail is an fsynced file. So codes are asked for in batches
    # well under that bound, each batch's mails awaited before the next. A mail that went
    # missing anyway is asked for again once the 60 s resend cooldown has passed.
    mailbox = MailBox(args.mail_dir)
    for start in range(0, len(emails), args.mail_batch):
        batch = emails[start:start + args.mail_batch]
        asked = time.monotonic()
        run_all("codes requested", batch, request_code, max(args.concurrency, 16), quiet=True)
        missing = mailbox.wait_for(set(batch), args.mail_timeout)
        if missing:
            print(f"  {len(missing)} verification mails missing; asking again after the resend "
                  "cooldown", file=sys.stderr)
            time.sleep(max(0.0, asked + 61.0 - time.monotonic()))
            run_all("codes requested again", sorted(missing), request_code, 4)
            missing = mailbox.wait_for(missing, args.mail_timeout)
            if missing:
                raise RuntimeError(
                    f"no verification mail in {args.mail_dir} for {len(missing)} addresses "
                    f"(e.g. {sorted(missing)[:3]}); see the server log"
                )
        print(f"  codes read: {start + len(batch)}/{len(emails)} in "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    codes = mailbox.codes

    def sign_up(address: str) -> str:
        answer = expect(*client.post(f"{api}/auth/email-verifications/confirm",
                                     {"email": address, "code": codes[address]}),
                        200, f"confirm {address}")
        answer = expect(*client.post(f"{api}/auth/signup", {
            "verification_token": answer["verification_token"],
            "password": args.password,
            "name": f"Buyer {address.split('@')[0]}",
        }), 201, f"signup {address}")
        return answer["user_id"]

    user_ids = run_all("signed up", emails, sign_up, args.concurrency)

    def log_in(address: str) -> str:
        answer = expect(*client.post(f"{api}/auth/login",
                                     {"email": address, "password": args.password}),
                        200, f"login {address}")
        return answer["access_token"]

    login_started = time.monotonic()
    login_started_epoch = time.time()
    tokens = run_all("logged in", emails, log_in, args.concurrency)
    if len(set(user_ids)) != args.users or len(set(tokens)) != args.users:
        raise RuntimeError("expected distinct users and tokens")
    tmp = f"{args.out}.tmp"
    with open(tmp, "w") as f:
        f.write("".join(f"{t}\n" for t in tokens))
    os.replace(tmp, args.out)
    elapsed = time.monotonic() - started
    print(f"setup: {args.users} verified customers logged in, tokens in {args.out} "
          f"({elapsed:.1f} s in all, logins {time.monotonic() - login_started:.1f} s)",
          file=sys.stderr)
    # For the caller: the Unix time at which the oldest token was issued (they live 15 minutes).
    print(f"{login_started_epoch:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
