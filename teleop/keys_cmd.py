"""Manage CurveZMQ keys by role (docs/security.md).

  teleop keys init [--dir DIR]                  bedside key pair + empty registry (existing keys are kept)
  teleop keys add NAME --role ROLE [--dir DIR]  a client key pair (surgeon | station | monitor | qa), registered
  teleop keys list [--dir DIR]                  every client: role, fingerprint, revoked or not
  teleop keys revoke NAME [--dir DIR]           refuse that key from now on (the bedside re-reads the registry)
  teleop keys fingerprint FILE                  the fingerprint of a .key or .key_secret file

DIR defaults to security.keys_dir. Secret files are written 0600 in 0700 directories, and a secret file
that other users can read is refused when loaded.
"""

from __future__ import annotations

import argparse

from transport.security import ROLES, KeyStore, fingerprint, load_public


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    for name, help_text in (("init", "create the bedside key pair and registry"), ("list", "list clients")):
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("--dir", help="keys directory (default: security.keys_dir)")
    a = sub.add_parser("add", help="create and register a client key pair")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--dir", help="keys directory (default: security.keys_dir)")
    r = sub.add_parser("revoke", help="revoke a client key")
    r.add_argument("name")
    r.add_argument("--dir", help="keys directory (default: security.keys_dir)")
    f = sub.add_parser("fingerprint", help="print a key file's fingerprint")
    f.add_argument("file")


def run(args: argparse.Namespace) -> int:
    if args.keys_action == "fingerprint":
        print(fingerprint(load_public(args.file)))
        return 0
    store = KeyStore(args.dir or args.cfg.security.keys_dir)
    if args.keys_action == "init":
        store.init()
        print(f"keys directory {store.root}")
        print(f"bedside public key {store.server_public} fingerprint {fingerprint(load_public(store.server_public))}")
    elif args.keys_action == "add":
        c = store.add(args.name, args.role)
        print(f"added {c.name} ({c.role}) fingerprint {c.fingerprint}")
        print(f"give that station: {store.client_secret(c.name)} and {store.server_public}")
    elif args.keys_action == "revoke":
        c = store.revoke(args.name)
        print(f"revoked {c.name} ({c.role}) fingerprint {c.fingerprint}")
    else:
        for c in store.clients():
            print(f"{c.name:20s} {c.role:8s} {c.fingerprint}{'  REVOKED' if c.revoked else ''}")
    return 0
