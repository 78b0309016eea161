"""A real SMTP server (aiosmtpd) for the exit delivery tests.

Usage: smtp_sink.py OUTDIR

Listens on a free port of 127.0.0.1, prints that port on the first line of
stdout, and exits when stdin closes (so it cannot outlive the test). Each
accepted message is stored as OUTDIR/NNNN.eml (the exact bytes received,
dot-stuffing undone) plus OUTDIR/NNNN.json (envelope and EHLO name), both
written before the final 250 reply.

Recipients whose local part starts with "reject" get 550, with "defer" 451.
"""

import asyncio
import json
import os
import sys
import threading

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 Recipient address rejected"
        if local.startswith("defer"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.outdir, "%04d" % self.count)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "helo": session.host_name,
        }
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK"


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


async def main(outdir):
    handler = Sink(outdir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", ident="test sink"),
        host="127.0.0.1",
        port=0,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
