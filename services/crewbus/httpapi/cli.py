"""`crewbus apikey create|list|revoke`: the gateway's keys, kept on the bus."""

from __future__ import annotations

import argparse
import sys
import time

from crewbus.auth.permissions import ADMIN
from crewbus.bus.connection import connect_for_command
from crewbus.httpapi.apikeys import ApiKeyError, open_key_store, parse_scopes
from crewbus.settings import BusSettings, load


async def apikey_command(nats_url: str, args: argparse.Namespace) -> int:
    if args.apikey_command == "create":
        scopes = parse_scopes(args.scope)  # a bad scope is refused before connecting
        if args.rate is not None and args.rate < 1:
            raise ValueError("--rate must be at least 1")
    nc = await connect_for_command(nats_url, ADMIN)
    try:
        replicas = load(BusSettings).stream_replicas  # as the dataset commands read it
        store = await open_key_store(nc.jetstream(), replicas)
        try:
            match args.apikey_command:
                case "create":
                    key, record = await store.create(args.name, scopes, args.rate)
                    print(f"created key {record.name!r} with scopes "
                          f"{','.join(record.scopes)}; it is shown once, keep it:",
                          file=sys.stderr)
                    print(key)
                case "list":
                    keys = await store.list()
                    if not keys:
                        print("no API keys: the gateway is open, on 127.0.0.1 only")
                    for k in keys:
                        rate = f"{k.rate_per_minute}/min" if k.rate_per_minute else "default"
                        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created_at))
                        print(f"{k.name:<24} {','.join(k.scopes):<28} rate {rate:<10} "
                              f"created {created}")
                case "revoke":
                    record = await store.revoke(args.name)
                    print(f"revoked key {record.name!r}")
        except ApiKeyError as exc:
            print(f"crewbus apikey: {exc}", file=sys.stderr)
            return 1
    finally:
        await nc.close()
    return 0
