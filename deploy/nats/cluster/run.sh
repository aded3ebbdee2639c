#!/bin/sh
# Start, stop or check the 3-node JetStream cluster of n1.conf n2.conf n3.conf
# on this machine's loopback.
#
#   deploy/nats/cluster/run.sh start     # clients on 4222 4223 4224
#   deploy/nats/cluster/run.sh status
#   deploy/nats/cluster/run.sh stop
#
# JetStream data (store_dir ./data/nN, relative to this folder, where the
# script runs the servers), logs and pid files go to deploy/nats/cluster/data/.
# PORT_OFFSET=10000 shifts every port (clients 14222-14224, cluster
# 16222-16224, monitoring 18222-18224), to run next to something on the
# default ports. NATS_SERVER names the nats-server binary.
set -eu

cd "$(dirname "$0")"
BIN=${NATS_SERVER:-nats-server}
DATA_DIR=data
OFFSET=${PORT_OFFSET:-0}
# Route credentials of n*.conf (development default), needed only to rewrite
# the routes when PORT_OFFSET is set.
ROUTE_AUTH=${ROUTE_AUTH:-route:route-dev-password}

pidfile() { echo "$DATA_DIR/n$1.pid"; }

alive() {
	[ -f "$(pidfile "$1")" ] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null
}

start() {
	mkdir -p "$DATA_DIR"
	routes=""
	for n in 1 2 3; do
		routes="${routes:+$routes,}nats-route://$ROUTE_AUTH@127.0.0.1:$((6221 + n + OFFSET))"
	done
	for n in 1 2 3; do
		if alive "$n"; then
			echo "n$n already running (pid $(cat "$(pidfile "$n")"))"
			continue
		fi
		set -- -c "n$n.conf" -l "$DATA_DIR/n$n.log" -P "$(pidfile "$n")"
		if [ "$OFFSET" != 0 ]; then
			set -- "$@" -p $((4221 + n + OFFSET)) -m $((8221 + n + OFFSET)) \
				--cluster "nats://127.0.0.1:$((6221 + n + OFFSET))" --routes "$routes"
		fi
		"$BIN" "$@" </dev/null >/dev/null 2>&1 &
		echo "n$n started (pid $!, client port $((4221 + n + OFFSET)), log $DATA_DIR/n$n.log)"
	done
	# Wait until every node answers /healthz (JetStream included).
	for n in 1 2 3; do
		url="http://127.0.0.1:$((8221 + n + OFFSET))/healthz"
		i=0
		until curl -fsS "$url" >/dev/null 2>&1; do
			i=$((i + 1))
			if [ "$i" -gt 100 ]; then
				echo "n$n not healthy after 20s: see $DATA_DIR/n$n.log" >&2
				exit 1
			fi
			sleep 0.2
		done
	done
	echo "cluster ready: nats://127.0.0.1:$((4222 + OFFSET)),nats://127.0.0.1:$((4223 + OFFSET)),nats://127.0.0.1:$((4224 + OFFSET))"
}

stop() {
	for n in 1 2 3; do
		if alive "$n"; then
			pid=$(cat "$(pidfile "$n")")
			kill "$pid"
			i=0
			while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
				i=$((i + 1))
				sleep 0.1
			done
			echo "n$n stopped"
		fi
		rm -f "$(pidfile "$n")"
	done
}

status() {
	for n in 1 2 3; do
		if alive "$n"; then
			echo "n$n running (pid $(cat "$(pidfile "$n")"))"
		else
			echo "n$n stopped"
		fi
	done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
restart) stop && start ;;
status) status ;;
*)
	echo "usage: $0 start|stop|restart|status" >&2
	exit 2
	;;
esac
