"""The config of the small loopback Postfix instances the integration tests start: master.cf (one
smtpd on 127.0.0.1:{port}, the usual internal services) and a main.cf that keeps mail in its
queue (relayhost [127.0.0.1]:1, where nothing listens) unless a test appends delivery settings."""

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
maillog_file = {base}/maillog
myhostname = {hostname}
mydomain = example
myorigin = $myhostname
mydestination =
local_transport = error:no local delivery
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:1
smtp_dns_support_level = disabled
smtp_host_lookup = native
alias_maps =
alias_database =
notify_classes =
"""


def main_cf(base: object, hostname: str) -> str:
    """main.cf of a loopback instance whose directories live under `base`."""
    return MAIN_CF.format(base=base, hostname=hostname)
