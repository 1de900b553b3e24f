"""The config of the small loopback Postfix instances the integration tests start: master.cf (one
smtpd on 127.0.0.1:{port}, the usual internal services) and a main.cf that keeps mail in its
queue (relayhost [127.0.0.1]:1, where nothing listens) unless a test appends delivery settings."""

from hacluster_lab.lab.postfix import master_cf

MASTER_CF = master_cf("127.0.0.1:{port}")  # .format(port=...)


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
