"""A real SMTP server (aiosmtpd) for the exit delivery tests.

Usage: smtp_sink.py OUTDIR [EHLO_REPLY]

Listens on a free port of 127.0.0.1, prints that port on the first line of
stdout, and exits when stdin closes (so it cannot outlive the test). Each
accepted message is stored as OUTDIR/NNNN.eml (the exact bytes received,
dot-stuffing undone) plus OUTDIR/NNNN.json (envelope and EHLO name), both
written before the final 250 reply.

Recipients whose local part starts with "reject" get 550, with "defer" 451.

With EHLO_REPLY (such as "502 5.5.1 EHLO not implemented") the server
answers every EHLO with that line, as an SMTP server that predates ESMTP
does; HELO works as usual. The JSON records whether the session used EHLO
("esmtp") and how many connections the server had accepted by then
("connections").
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
        self.connections = 0

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
            "esmtp": session.extended_smtp,
            "connections": self.connections,
        }
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK"


class RefusingEhlo(SMTP):
    """An SMTP server that answers EHLO with a fixed reply."""

    ehlo_reply = None

    async def smtp_EHLO(self, hostname):
        await self.push(self.ehlo_reply)


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


async def main(outdir, ehlo_reply):
    handler = Sink(outdir)
    loop = asyncio.get_running_loop()
    server_class = SMTP
    if ehlo_reply:
        RefusingEhlo.ehlo_reply = ehlo_reply
        server_class = RefusingEhlo

    def connect():
        handler.connections += 1
        return server_class(handler, hostname="sink.test", ident="test sink")

    server = await loop.create_server(
        connect,
        host="127.0.0.1",
        port=0,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
