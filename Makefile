# hacluster: every set-up step lives here, so a fresh Debian 12 machine (as root) needs only
#   make demo   -- the main job: the embedded default cluster with a failover demo
#   make test   -- the whole test suite
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Debian packages: ZooKeeper (coordination), Postfix + dnsmasq (the mail lab), keepalived (the
# benchmark peer), nftables (partitions), openssh-server (deploy tests), resource-agents (OCF
# compatibility; libxml2-utils: xmllint checks agent meta-data against its DTD), faketime (clock
# skew), tcpdump (GARP on the wire), vagrant (Vagrantfile check), prometheus (promtool for alert
# rules), chromium (status page test), fence-agents (the standard fence agents: fence_dummy drives
# the fencing tests, metadata.rng checks fence_hacluster_lab metadata), dovecot-imapd dovecot-pop3d
# (IMAP/POP3 checks, the lab stores' Dovecot).
DEB_PACKAGES := python3 python3-venv python3-pip zookeeper postfix dnsmasq-base keepalived nftables \
	iproute2 iputils-ping procps psmisc openssh-server openssh-client resource-agents libxml2-utils faketime tcpdump \
	prometheus chromium vagrant openssl systemd util-linux fence-agents dovecot-imapd dovecot-pop3d

.PHONY: all deps demo test test-unit test-integration test-lab product-check wheel-check bench clean lab-down rehearse rehearse-load vagrant-lab vagrant-ci docs-img

all: test

/usr/share/java/zookeeper.jar:
	apt-get update
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES)

deps: /usr/share/java/zookeeper.jar $(STAMP)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update && echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; fi

# the product (hacluster) and the lab toolkit (lab/: hacluster-lab, which [test] pulls in through
# [lab]), both editable; pip takes hacluster-lab from ./lab, not from an index
$(STAMP): pyproject.toml lab/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./lab -e '.[test]'
	touch $(STAMP)

demo: deps
	$(VENV)/bin/hacluster demo

test: deps
	$(PY) -m pytest -q -p no:cacheprovider --timeout=600 tests

test-unit: deps
	$(PY) -m pytest -q tests/unit

test-integration: deps
	$(PY) -m pytest -q tests/integration

test-lab: deps
	$(PY) -m pytest -q tests/lab_unit tests/lab

# the product without the lab toolkit: its wheel alone in a fresh venv (offline: the dependencies come
# from this venv), `hacluster --help`, `config check` on the example spec, the product's unit tests
product-check: deps
	$(PY) tests/product_check.py

# the production path (issue 14): both wheels from `python -m build` (a clean export of the tree),
# an empty venv outside the tree (the mail node's install measured, then [deploy,lab] and the lab
# wheel), `hacluster --help`, `config check`, the agent on a real ZooKeeper, the deploy tests (real
# sshd) and a lab failover test by that venv's python on a copy of tests/, one drill (~4 min, root).
# The dependency wheelhouse needs the index once and is cached (~/.cache/hacluster/wheel-check/);
# the suite runs the short form (--quick: tests/lab/test_wheel_install.py)
wheel-check: deps
	$(PY) tests/wheel_check.py

# the README's pictures (docs/img/), regenerated from the lab by the tests that assert them
docs-img: deps
	HACLUSTER_DOCS_IMG=$(CURDIR)/docs/img $(PY) -m pytest -q -p no:cacheprovider --timeout=600 \
	  tests/lab/test_showcase.py tests/lab/test_drills.py -k "readme or all_playbooks"

bench: deps
	$(VENV)/bin/hacluster bench election --runs 20 --json

# the README's two commands on a pristine Debian 12 root filesystem (what CI runs: .ci/run)
rehearse:
	.ci/rehearse

# the same with one core kept busy by an unrelated process for the whole run
rehearse-load:
	.ci/rehearse --load

# the Vagrant lab on Vagrant's docker provider, start to finish (vagrant/README.md): builds the base
# image if its inputs changed, starts dockerd if none answers, `vagrant up --provider=docker`, the mail
# path and `hacluster deploy` over SSH, the drills (PLAYBOOKS="a.yml b.yml" for a subset), the
# results, `vagrant destroy -f` (always). Its own Debian packages: the suite does not need them.
VAGRANT_LAB_PACKAGES := docker.io debootstrap vagrant nftables iproute2

vagrant-lab: deps
	@missing=$$(for p in $(VAGRANT_LAB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; fi
	vagrant/run-lab

# a quick check of the machines (~3-4 min): the same lab with two drills, store-holder-power-off and
# planned-switchover, under .ci/vagrant-lab's hard timeout (VAGRANT_LAB_TIMEOUT, default 15m here) and
# its second teardown if that timeout struck. CI (.ci/run) runs every playbook, cold.
vagrant-ci: deps
	PLAYBOOKS="store-holder-power-off.yml planned-switchover.yml" VAGRANT_LAB_TIMEOUT=$${VAGRANT_LAB_TIMEOUT:-15m} .ci/vagrant-lab

lab-down:
	-$(VENV)/bin/hacluster lab down

clean: lab-down
	rm -rf $(VENV) build *.egg-info
