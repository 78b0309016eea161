#!/usr/bin/env python3
"""Start a private INN (Debian package inn2) news server for the tests.

Usage: inn_server.py DIR [--group NAME[=FLAG]]... [--user NAME:PASSWORD:ACCESS]...
                         [--tls] [--port PORT]

Everything INN needs lives under DIR (a fresh temporary directory): its
inn.conf, the other configuration files, the active file, history, spool,
overview, logs and run files. Only INN's programs under /usr/lib/news and
the "news" user come from the system; no system configuration is read or
written and no system service is involved. Run it as root (innd then runs
as "news"); it needs inn2 and the openssl command.

The listening socket is bound here, on 127.0.0.1 and a port the kernel
picks (or PORT, to start a server again where an earlier one listened),
and handed to innd as a systemd-style activated socket (LISTEN_FDS),
so there is no race for the port. The script prints the port on one line,
then replaces itself with innd (same process id), running in the
foreground: killing that process stops the server.

Groups default to "=y" (posting allowed); "=n" makes a group that refuses
posts. Without --user, every loopback client may read and post. With one
or more --user, clients must send AUTHINFO USER/PASS (checked by INN's
ckpasswd against a crypt(3) password file made with "openssl passwd") and
get the ACCESS letters given (RP to read and post, R to read only).

--tls makes a self-signed certificate for "localhost" (DIR/tls/cert.pem,
made by the openssl command) and has nnrpd offer STARTTLS with it. It also
opens a second port for implicit TLS (as port 563 would be): a small
acceptor process hands each connection on it to "nnrpd -S" (nnrpd's inetd
mode) and exits when innd does. Its port is printed on a second line.

innd treats loopback connections as a peer (incoming.conf), so a client
must send MODE READER to reach nnrpd, as with most INN installations.
"""

import argparse
import os
import pwd
import select
import socket
import subprocess
import sys

BIN = "/usr/lib/news/bin"


def inn_conf(d, tls):
    conf = {
        "mta": '"/bin/false %s"',
        "organization": '"mimix tests"',
        "ovmethod": "tradindexed",
        "hismethod": "hisv6",
        "pathhost": "news.test.invalid",
        "domain": "test.invalid",
        "fromhost": "test.invalid",
        "server": "127.0.0.1",
        "pathnews": "/usr/lib/news",
        "pathbin": BIN,
        "pathcontrol": f"{BIN}/control",
        "pathetc": f"{d}/etc",
        "pathdb": f"{d}/db",
        "pathfilter": f"{d}/filter",
        "pathhttp": f"{d}/http",
        "pathlog": f"{d}/log",
        "pathrun": f"{d}/run",
        "pathspool": f"{d}/spool",
        "patharchive": f"{d}/spool/archive",
        "patharticles": f"{d}/spool/articles",
        "pathincoming": f"{d}/spool/incoming",
        "pathoutgoing": f"{d}/spool/outgoing",
        "pathoverview": f"{d}/spool/overview",
        "pathtmp": f"{d}/spool/incoming/tmp",
        "bindaddress": "127.0.0.1",
        "bindaddress6": "none",
        "artcutoff": "0",
        "enableoverview": "true",
        "wireformat": "true",
        "storeonxref": "true",
        "maxartsize": "1000000",
        "localmaxartsize": "1000000",
        "nnrpdcheckart": "true",
        "pgpverify": "false",
        "doinnwatch": "false",
        "docancels": "none",
        "logipaddr": "false",
        "status": "0",
        "timer": "0",
        "wipcheck": "5",
        "wipexpire": "10",
        "addinjectionpostinghost": "false",
    }
    if tls:
        conf.update(tlscertfile=tls[0], tlskeyfile=tls[1], tlscafile=tls[0])
    return "".join(f"{k}: {v}\n" for k, v in conf.items())


def readers_conf(d, users):
    if not users:
        return (
            'auth "loopback" {\n  hosts: "127.0.0.1, localhost, stdin"\n'
            '  default: "<loopback>"\n}\n'
            'access "loopback" {\n  users: "<loopback>"\n  newsgroups: "*"\n'
            "  access: RP\n}\n"
        )
    out = (
        'auth "loopback" {\n  hosts: "127.0.0.1, localhost, stdin"\n'
        f'  auth: "ckpasswd -f {d}/etc/passwd"\n}}\n'
    )
    for name, _, access in users:
        out += (
            f'access "{name}" {{\n  users: "{name}"\n  newsgroups: "*"\n'
            f"  access: {access}\n}}\n"
        )
    return out


def crypt(password):
    """A SHA-512 crypt(3) hash, as ckpasswd checks it."""
    return subprocess.run(["openssl", "passwd", "-6", "-stdin"],
                          input=password, capture_output=True, text=True,
                          check=True).stdout.strip()


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def layout(d, groups, users, tls):
    for sub in ["etc", "db", "filter", "http", "log", "run", "spool",
                "spool/archive", "spool/articles", "spool/incoming",
                "spool/incoming/tmp", "spool/outgoing", "spool/overview"]:
        os.makedirs(f"{d}/{sub}", exist_ok=True)
    write(f"{d}/etc/inn.conf", inn_conf(d, tls))
    write(f"{d}/etc/storage.conf",
          "method tradspool {\n  newsgroups: *\n  class: 0\n}\n")
    write(f"{d}/etc/newsfeeds", "ME:*::\n")
    write(f"{d}/etc/incoming.conf",
          'peer ME {\n  hostname: "localhost, 127.0.0.1"\n}\n')
    write(f"{d}/etc/readers.conf", readers_conf(d, users))
    write(f"{d}/etc/expire.ctl", "/remember/:11\n*:A:1:10:never\n")
    write(f"{d}/etc/moderators", "")
    write(f"{d}/etc/distrib.pats", "")
    write(f"{d}/etc/passwd", "".join(
        f"{n}:{crypt(p)}\n"
        for n, p, _ in users), 0o640)
    active = [("control", "n"), ("control.cancel", "n"), ("junk", "n")]
    active += groups
    write(f"{d}/db/active", "".join(
        f"{g} 0000000000 0000000001 {flag}\n" for g, flag in active))
    write(f"{d}/db/newsgroups", "".join(f"{g}\ttest group\n" for g, _ in active))
    write(f"{d}/db/active.times", "")
    write(f"{d}/db/history", "")


def as_news(argv):
    """Runs an INN tool as the news user and fails loudly on error."""
    news = pwd.getpwnam("news")
    pid = os.fork()
    if pid == 0:
        os.setgid(news.pw_gid)
        os.setuid(news.pw_uid)
        os.execv(argv[0], argv)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit(f"{argv[0]} failed with status {status}")


def chown_tree(d, uid, gid):
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)
    os.chown(d, uid, gid)


def make_cert(d):
    os.makedirs(f"{d}/tls", exist_ok=True)
    cert, key = f"{d}/tls/cert.pem", f"{d}/tls/key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-days", "2", "-keyout", key, "-out", cert],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def listener(port=0):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


def reap():
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def serve_implicit_tls(sock, innd_pid, news):
    """Hands each connection to "nnrpd -S" until innd is gone."""
    os.setsid()
    while os.getppid() == innd_pid:
        reap()
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready:
            continue
        conn, _ = sock.accept()
        if os.fork() == 0:
            for fd in (0, 1):
                os.dup2(conn.fileno(), fd)
            os.setgid(news.pw_gid)
            os.setuid(news.pw_uid)
            os.execv(f"{BIN}/nnrpd", [f"{BIN}/nnrpd", "-S"])
        conn.close()
    os._exit(0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--group", action="append", default=[])
    p.add_argument("--user", action="append", default=[])
    p.add_argument("--tls", action="store_true")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    d = os.path.abspath(a.dir)
    groups = [tuple((g + "=y").split("=")[:2]) for g in a.group]
    users = [tuple(u.split(":", 2)) for u in a.user]
    tls = make_cert(d) if a.tls else None
    layout(d, groups, users, tls)
    news = pwd.getpwnam("news")
    chown_tree(d, news.pw_uid, news.pw_gid)
    os.chmod(d, 0o755)
    os.environ["INNCONF"] = f"{d}/etc/inn.conf"
    as_news([f"{BIN}/makedbz", "-i", "-o"])

    sock = listener(a.port)
    port = sock.getsockname()[1]
    if sock.fileno() != 3:
        os.dup2(sock.fileno(), 3)
    os.set_inheritable(3, True)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
    print(port, flush=True)
    log = os.open(f"{d}/log/innd.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    if tls:
        tls_sock = listener()
        print(tls_sock.getsockname()[1], flush=True)
        if os.fork() == 0:
            sock.close()
            try:
                os.close(3)
            except OSError:
                pass
            os.dup2(log, 1)
            os.dup2(log, 2)
            serve_implicit_tls(tls_sock, os.getppid(), news)
        tls_sock.close()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.execv(f"{BIN}/innd", [f"{BIN}/innd", "-d", "-c", "0"])


if __name__ == "__main__":
    main()
