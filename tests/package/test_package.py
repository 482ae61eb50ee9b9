"""The .deb: builds it with scripts/package (lintian included), then installs,
upgrades, removes and purges it with dpkg in a throwaway root: an overlay of
this machine's own root in a private mount namespace, so the host is left as
it was. Checks the installed paths (check-config, version), the system user,
the state and config directories, the unit file (systemd-analyze verify and
security), and that upgrade and remove keep config and buffered data while
purge deletes them.

Needs root (mount namespaces, overlayfs); exits 77 (skipped) otherwise.
TAGRELAY_DEB=path uses an already built package instead of building one.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SKIP = 77


class ThrowawayRoot:
    """This machine's root as an overlay whose writes land in a temporary
    directory. Each run() mounts it in a new mount namespace (so nothing is
    left mounted) and runs a shell script chrooted into it."""

    def __init__(self, base):
        self.upper = os.path.join(base, "upper")
        self.work = os.path.join(base, "work")
        self.merged = os.path.join(base, "merged")
        for d in (self.upper, self.work, self.merged):
            os.makedirs(d)

    def run(self, script, check=True):
        m = self.merged
        setup = (f"set -e; mount -t overlay overlay -o lowerdir=/,upperdir={self.upper},"
                 f"workdir={self.work} {m}; mount --rbind /dev {m}/dev; "
                 f"mount -t proc proc {m}/proc; mount -t tmpfs tmpfs {m}/run; "
                 f"exec chroot {m} /bin/sh -c \"$0\"")
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", setup,
                            "set -e\n" + script],
                           capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                                "DEBIAN_FRONTEND": "noninteractive"})
        if check and r.returncode != 0:
            raise AssertionError(f"in the throwaway root, exit {r.returncode}:\n{script}\n"
                                 f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
        return r


def relabel(deb, version, out):
    """The same package with another version: an upgrade of the first."""
    tree = tempfile.mkdtemp()
    try:
        subprocess.run(["dpkg-deb", "-R", deb, tree], check=True)
        control = os.path.join(tree, "DEBIAN", "control")
        with open(control) as f:
            text = f.read()
        with open(control, "w") as f:
            f.write(re.sub(r"^Version: .*$", f"Version: {version}", text, flags=re.M))
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, out], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(tree)


AGENT_CONFIG_EDIT = r"""
sed -i -e 's|^url = .*|url = "mqtt://127.0.0.1:1"\ninsecure = true|' \
       -e 's|^host = "192.168.1.20"|host = "127.0.0.1"|' \
       -e 's|^port = 502|port = 1|' -e 's|^poll = "1s"|poll = "100ms"|' \
       /etc/tagrelay/tagrelay.toml
printf '\n[status]\nlisten = ""\nsocket = ""\n' >> /etc/tagrelay/tagrelay.toml
"""


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp(prefix="tagrelay-package-")
        cls.deb = os.environ.get("TAGRELAY_DEB")
        if not cls.deb:
            r = subprocess.run([os.path.join(SOURCE, "scripts", "package"), cls.base],
                               capture_output=True, text=True, cwd=SOURCE)
            if r.returncode != 0:
                raise AssertionError(f"scripts/package failed:\n{r.stdout}\n{r.stderr}")
            print(r.stdout, end="", file=sys.stderr)
            (cls.deb,) = [os.path.join(cls.base, f) for f in os.listdir(cls.base)
                          if f.endswith(".deb")]
        cls.version = subprocess.run(["dpkg-deb", "-f", cls.deb, "Version"], check=True,
                                     capture_output=True, text=True).stdout.strip()
        cls.upgrade = os.path.join(cls.base, "upgrade.deb")
        relabel(cls.deb, cls.version + "+1", cls.upgrade)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.base, ignore_errors=True)

    def setUp(self):
        self.root = ThrowawayRoot(tempfile.mkdtemp(dir=self.base))

    def sh(self, script, check=True):
        return self.root.run(script, check)

    def state_digest(self):
        """sha256 of every file under /var/lib/tagrelay and of the config, by path."""
        out = self.sh("cd /var/lib/tagrelay && find . -type f | sort | xargs -r sha256sum; "
                      "sha256sum /etc/tagrelay/tagrelay.toml /etc/tagrelay/keys/gateway.key").stdout
        return out

    def test_install_upgrade_remove_purge(self):
        with open("/etc/passwd") as f:
            self.host_passwd = f.read()
        deb = self.deb
        self.assertRegex(os.path.basename(deb), r"^tagrelay_[0-9.]+_[a-z0-9]+\.deb$")
        self.sh(f"dpkg -i {deb}")

        # The installed paths.
        self.assertEqual(self.sh("/usr/bin/tagrelay version").stdout.strip(),
                         f"tagrelay {self.version}")
        user = self.sh("id tagrelay").stdout
        self.assertIn("(dialout)", user)
        self.assertIn("(tagrelay)", user)
        self.assertEqual(self.sh("stat -c '%U:%G %a' /var/lib/tagrelay /etc/tagrelay/keys").stdout,
                         "tagrelay:tagrelay 750\nroot:tagrelay 750\n")
        self.assertIn("/etc/tagrelay/tagrelay.toml",
                      self.sh("dpkg-query -W -f='${Conffiles}' tagrelay").stdout)
        self.sh("test -L /etc/systemd/system/multi-user.target.wants/tagrelay.service")
        self.sh("ls /usr/share/tagrelay/profiles/eastron-sdm630.toml "
                "/usr/share/doc/tagrelay/operations.md /usr/share/man/man8/tagrelay.8.gz")

        # The shipped config is valid once the gateway's key is there.
        r = self.sh("/usr/bin/tagrelay check-config", check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("/etc/tagrelay/keys/gateway.key", r.stderr)
        self.sh("echo k3y > /etc/tagrelay/keys/gateway.key; "
                "chown tagrelay:tagrelay /etc/tagrelay/keys/gateway.key; "
                "chmod 600 /etc/tagrelay/keys/gateway.key")
        r = self.sh("runuser -u tagrelay -- /usr/bin/tagrelay check-config")
        self.assertIn("/etc/tagrelay/tagrelay.toml: ok", r.stdout)
        # A profile from the installed directory.
        r = self.sh("sed 's|^unit = 3|unit = 3\\nprofile = \"eastron-sdm630\"|' "
                    "/etc/tagrelay/tagrelay.toml > /tmp/p.toml && "
                    "/usr/bin/tagrelay check-config --config /tmp/p.toml")
        self.assertRegex(r.stdout, r"1 device\(s\), 3[0-9] tag\(s\)")

        # The unit, as installed.
        r = self.sh("systemd-analyze verify /lib/systemd/system/tagrelay.service 2>&1", check=False)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertNotIn("tagrelay.service:", r.stdout)
        r = self.sh("systemd-analyze security --offline=true "
                    "/lib/systemd/system/tagrelay.service 2>&1")
        level = float(re.search(r"Overall exposure level for tagrelay.service: ([0-9.]+)",
                                r.stdout).group(1))
        self.assertLessEqual(level, 2.0, r.stdout)

        # Buffered data: the agent runs as its user against an unreachable
        # device and broker, so every poll is stored and nothing is delivered.
        self.sh(AGENT_CONFIG_EDIT)
        r = self.sh("cd /var/lib/tagrelay && rc=0 && runuser -u tagrelay -- timeout -s TERM 3 "
                    "/usr/bin/tagrelay run || rc=$?; test $rc = 124", check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("stopped:", r.stderr)
        self.assertRegex(r.stderr, r"stopped: [1-9][0-9]* readings stored, 0 acknowledged")
        before = self.state_digest()
        self.assertIn("./tagrelay.db", before)

        # Upgrade: config and buffered data stay as they were.
        self.sh(f"dpkg -i {self.upgrade}")
        self.assertEqual(self.sh("dpkg-query -W -f='${Version}' tagrelay").stdout,
                         self.version + "+1")
        self.assertEqual(self.state_digest(), before)
        self.assertIn('insecure = true', self.sh("cat /etc/tagrelay/tagrelay.toml").stdout)
        self.sh("runuser -u tagrelay -- /usr/bin/tagrelay check-config")

        # Remove: the program goes, config and data stay.
        self.sh("dpkg -r tagrelay")
        self.sh("test ! -e /usr/bin/tagrelay")
        self.assertEqual(self.state_digest(), before)

        # Purge: config and data go; the system user stays (Debian's habit).
        self.sh("dpkg -P tagrelay")
        self.sh("test ! -e /etc/tagrelay && test ! -e /var/lib/tagrelay && "
                "test ! -e /etc/systemd/system/multi-user.target.wants/tagrelay.service")
        self.sh("id tagrelay")

        # Nothing of it reached this machine's own root.
        with open("/etc/passwd") as f:
            self.assertEqual(f.read(), self.host_passwd)


def main():
    if os.geteuid() != 0:
        print("skipped: the package test needs root (mount namespaces, overlayfs)")
        sys.exit(SKIP)
    for tool in ("unshare", "dpkg-deb", "systemd-analyze", "dpkg-buildpackage", "lintian"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: run scripts/setup", file=sys.stderr)
            sys.exit(1)
    unittest.main()


if __name__ == "__main__":
    main()
