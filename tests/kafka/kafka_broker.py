#!/usr/bin/env python3
"""A real Apache Kafka broker (KRaft, broker and controller in one JVM) for
sluice's kafka test tier.

  kafka_broker.py fetch LIB
      Copies kafka_2.13 and its dependencies (tests/kafka/pom.xml) into LIB with
      Maven, unless LIB already holds them: a second run downloads nothing.

  kafka_broker.py serve --lib LIB --dir DIR [--tls]
      Fetches if needed, formats KRaft storage under DIR, starts the broker on
      127.0.0.1 with free ports and waits (60 s at most) for "Kafka Server
      started" in DIR/server.log. Prints one line on stdout:
          READY PLAINTEXT=127.0.0.1:PORT [SSL=127.0.0.1:PORT SASL_SSL=127.0.0.1:PORT CA=FILE]
      or FAILED <reason> (with the log's tail on stderr) and exits 1. Then reads
      commands on stdin, one per line:
          stop   stop the broker (SIGTERM, SIGKILL after 30 s); answers STOPPED
          kill   SIGKILL the broker; answers STOPPED
          start  start it again with the same ports and data; answers READY ... or FAILED ...
      End of stdin (the test process exited, however it exited), SIGTERM or
      SIGINT stop the broker and end the tool. The JVM also gets SIGKILL if
      this tool dies (PR_SET_PDEATHSIG), so no broker outlives its test.
      --tls adds an SSL listener and a SASL_SSL listener (SASL/PLAIN, user
      "sluice", password "sluice-secret"), with a CA and broker certificate
      generated here with openssl.

  kafka_broker.py run --lib LIB --dir DIR [--tls] -- COMMAND...
      Starts the broker, runs COMMAND with KAFKA_BOOTSTRAP set, stops the broker.

Only the Python standard library, java, mvn and (for --tls) openssl are used.
"""
import argparse
import ctypes
import os
import secrets
import base64
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
READY_LINE = "Kafka Server started"
START_TIMEOUT_S = 60
HEAP = ["-Xms64m", "-Xmx384m"]
SASL_USER = "sluice"
SASL_PASSWORD = "sluice-secret"


def log(message):
    print("kafka_broker: " + message, file=sys.stderr, flush=True)


def pom_version():
    with open(os.path.join(HERE, "pom.xml")) as f:
        text = f.read()
    start = text.index("<kafka.version>") + len("<kafka.version>")
    return text[start:text.index("</kafka.version>")]


def fetch(lib):
    """Copies the broker's jars into `lib` unless they are there already."""
    marker = os.path.join(lib, ".complete")
    version = pom_version()
    if os.path.exists(marker):
        with open(marker) as f:
            if f.read().strip() == version:
                return
    if shutil.which("mvn") is None:
        raise SystemExit("kafka_broker: mvn is not installed (bash .ci/setup installs maven)")
    staging = lib + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    log("fetching org.apache.kafka:kafka_2.13:%s with Maven into %s" % (version, lib))
    # The pom's own target/ stays out of the source tree.
    work = staging + "-work"
    os.makedirs(work, exist_ok=True)
    shutil.copy(os.path.join(HERE, "pom.xml"), os.path.join(work, "pom.xml"))
    result = subprocess.run(
        ["mvn", "-B", "-q", "-f", os.path.join(work, "pom.xml"), "-DoutputDirectory=" + staging,
         "dependency:copy-dependencies"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    shutil.rmtree(work, ignore_errors=True)
    if result.returncode != 0 or not os.path.exists(os.path.join(staging, "kafka_2.13-%s.jar" % version)):
        sys.stderr.write(result.stdout[-6000:])
        raise SystemExit("kafka_broker: Maven could not fetch kafka_2.13:%s (exit %d)" % (version, result.returncode))
    with open(os.path.join(staging, ".complete"), "w") as f:
        f.write(version + "\n")
    shutil.rmtree(lib, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(lib)), exist_ok=True)
    os.rename(staging, lib)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_id():
    # What kafka.tools.StorageTool random-uuid prints (Uuid.randomUuid): 16 random
    # bytes, URL-safe base64 without padding, never starting with '-'. Made here
    # to spare one JVM start.
    while True:
        text = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certificates(directory):
    """A CA and a broker certificate for 127.0.0.1/localhost, PEM files."""
    os.makedirs(directory, exist_ok=True)
    ca_key, ca_crt = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.crt")
    key, csr, crt = (os.path.join(directory, n) for n in ("broker.key", "broker.csr", "broker.crt"))
    ext = os.path.join(directory, "broker.ext")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "2",
            "-subj", "/CN=sluice-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "2",
            "-extfile", ext)
    # Kafka's PEM key store: an unencrypted PKCS#8 key followed by the certificate chain.
    pkcs8 = subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", key], check=True,
                           stdout=subprocess.PIPE).stdout.decode()
    keystore = os.path.join(directory, "broker-keystore.pem")
    with open(keystore, "w") as f:
        f.write(pkcs8 + open(crt).read() + open(ca_crt).read())
    return ca_crt, keystore


class Broker:
    def __init__(self, lib, directory, tls):
        self.lib = os.path.abspath(lib)
        self.dir = os.path.abspath(directory)
        self.tls = tls
        self.process = None
        self.ports = {}
        self.ca = None
        self.log_file = os.path.join(self.dir, "server.log")
        self.stdout_file = os.path.join(self.dir, "server.out")

    def classpath(self):
        return os.path.join(self.lib, "*")

    def java(self, main, *args):
        return ["java"] + HEAP + [
            "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            "-Dlog4j2.configurationFile=" + os.path.join(self.dir, "log4j2.properties"),
            "-Dkafka.logs.dir=" + self.dir,
            "-cp", self.classpath(), main] + list(args)

    def render(self, template, target, values):
        with open(os.path.join(HERE, template)) as f:
            text = f.read()
        for name, value in values.items():
            text = text.replace("@%s@" % name, value)
        with open(target, "w") as f:
            f.write(text)

    def configure(self):
        os.makedirs(self.dir, exist_ok=True)
        self.ports = {"PLAINTEXT": free_port(), "CONTROLLER": free_port()}
        protocols = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
        extra = []
        if self.tls:
            self.ports["SSL"] = free_port()
            self.ports["SASL_SSL"] = free_port()
            protocols.update({"SSL": "SSL", "SASL_SSL": "SASL_SSL"})
            self.ca, keystore = make_certificates(os.path.join(self.dir, "certs"))
            extra += [
                "ssl.keystore.type=PEM",
                "ssl.keystore.location=" + keystore,
                "ssl.truststore.type=PEM",
                "ssl.truststore.location=" + self.ca,
                "ssl.client.auth=none",
                "sasl.enabled.mechanisms=PLAIN",
                "listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN",
                "listener.name.sasl_ssl.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                'username="admin" password="admin-secret" user_admin="admin-secret" '
                'user_%s="%s";' % (SASL_USER, SASL_PASSWORD),
            ]
        order = [name for name in ("PLAINTEXT", "CONTROLLER", "SSL", "SASL_SSL") if name in self.ports]
        listeners = ",".join("%s://127.0.0.1:%d" % (n, self.ports[n]) for n in order)
        advertised = ",".join("%s://127.0.0.1:%d" % (n, self.ports[n]) for n in order if n != "CONTROLLER")
        self.render("server.properties.in", os.path.join(self.dir, "server.properties"), {
            "CONTROLLER_PORT": str(self.ports["CONTROLLER"]),
            "LISTENERS": listeners,
            "ADVERTISED_LISTENERS": advertised,
            "PROTOCOL_MAP": ",".join("%s:%s" % (n, protocols[n]) for n in order),
            "DATA_DIR": os.path.join(self.dir, "data"),
            "EXTRA": "\n".join(extra),
        })
        self.render("log4j2.properties.in", os.path.join(self.dir, "log4j2.properties"), {"LOG_FILE": self.log_file})

    def format(self):
        command = self.java("kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c",
                            os.path.join(self.dir, "server.properties"), "--standalone")
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError("formatting KRaft storage failed (exit %d):\n%s" % (result.returncode, result.stdout[-4000:]))

    def tail(self, size=6000):
        parts = []
        for path in (self.stdout_file, self.log_file):
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - size))
                    parts.append("--- %s ---\n%s" % (path, f.read().decode(errors="replace")))
            except OSError:
                pass
        return "\n".join(parts)

    def start(self):
        start_at = os.path.getsize(self.log_file) if os.path.exists(self.log_file) else 0
        libc = ctypes.CDLL(None, use_errno=True)

        def die_with_parent():
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

        out = open(self.stdout_file, "ab")
        self.process = subprocess.Popen(self.java("kafka.Kafka", os.path.join(self.dir, "server.properties")),
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_parent)
        out.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the broker exited (code %d) before it was ready:\n%s" %
                                   (self.process.returncode, self.tail()))
            try:
                with open(self.log_file, "rb") as f:
                    f.seek(start_at)
                    if READY_LINE.encode() in f.read():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop(kill=True)
        raise RuntimeError("no '%s' in the broker's log after %d s:\n%s" % (READY_LINE, START_TIMEOUT_S, self.tail()))

    def stop(self, kill=False):
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def ready_line(self):
        fields = ["%s=127.0.0.1:%d" % (n, p) for n, p in self.ports.items() if n != "CONTROLLER"]
        if self.ca:
            fields.append("CA=" + self.ca)
        return "READY " + " ".join(fields)


def open_broker(args):
    fetch(args.lib)
    broker = Broker(args.lib, args.dir, args.tls)
    broker.configure()
    broker.format()
    broker.start()
    return broker


def serve(args):
    broker = None

    def on_signal(number, frame):
        if broker is not None:
            broker.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        broker = open_broker(args)
    except (RuntimeError, subprocess.CalledProcessError, OSError, SystemExit) as error:
        text = str(error) if not isinstance(error, subprocess.CalledProcessError) else \
            "%s: %s" % (error, (error.stderr or b"").decode(errors="replace"))
        log(text)
        print("FAILED " + text.splitlines()[0] if text else "FAILED", flush=True)
        if broker is not None:
            broker.stop(kill=True)
        return 1
    print(broker.ready_line(), flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stop":
                broker.stop()
                print("STOPPED", flush=True)
            elif command == "kill":
                broker.stop(kill=True)
                print("STOPPED", flush=True)
            elif command == "start":
                try:
                    broker.start()
                    print(broker.ready_line(), flush=True)
                except RuntimeError as error:
                    log(str(error))
                    print("FAILED " + str(error).splitlines()[0], flush=True)
            elif command:
                print("ERROR unknown command " + command, flush=True)
    finally:
        broker.stop()
    return 0


def run(args):
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("kafka_broker: run needs a command after --")
    broker = None
    try:
        broker = open_broker(args)
        env = dict(os.environ, KAFKA_BOOTSTRAP="127.0.0.1:%d" % broker.ports["PLAINTEXT"])
        log(broker.ready_line())
        return subprocess.call(command, env=env)
    except RuntimeError as error:
        log(str(error))
        return 1
    finally:
        if broker is not None:
            broker.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    f = sub.add_parser("fetch")
    f.add_argument("lib")
    for name in ("serve", "run"):
        p = sub.add_parser(name)
        p.add_argument("--lib", required=True)
        p.add_argument("--dir", required=True)
        p.add_argument("--tls", action="store_true")
        if name == "run":
            p.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.action == "fetch":
        fetch(args.lib)
        return 0
    return serve(args) if args.action == "serve" else run(args)


if __name__ == "__main__":
    sys.exit(main())
