#!/bin/bash
# Network-namespace topology and nftables faults for multi-node tests and the end-to-end bench.
#
# N nodes, each a namespace PREFIX-nK with two interfaces: l0 (10.250.0.K/24) and l1
# (10.250.1.K/24). Their veth peers sit in a hub namespace PREFIX-hub on two bridges, br0 (link 0)
# and br1 (link 1). Every address lives inside the namespaces: no traffic leaves them.
#
# Faults are nftables rules in table `inet ntfault` inside a node's namespace:
#   netns.sh create PREFIX N           build the topology
#   netns.sh destroy PREFIX            kill what runs inside, delete the namespaces
#   netns.sh clean-stale STEM          destroy STEM<pid>* topologies whose pid is gone
#   netns.sh cut-link PREFIX NODE LINK drop everything on link LINK (0|1) of NODE, both ways
#   netns.sh isolate PREFIX NODE       drop everything on both links of NODE
#   netns.sh partition PREFIX "A..." "B..."  nodes of A and B no longer hear each other
#   netns.sh oneway PREFIX NODE LINK|all     NODE sends nothing on LINK (it still receives)
#   netns.sh loss PREFIX PCT NODE...   NODE drops PCT % of received UDP at random, both links
#   netns.sh heal PREFIX NODE...       remove every fault rule of NODE
#   netns.sh addr NODE LINK            print the address of NODE on LINK
set -euo pipefail

FAULT_TABLE=ntfault

die() { echo "netns.sh: $*" >&2; exit 1; }

addr() { echo "10.250.$2.$1"; }

ns() { echo "$1-n$2"; }

nodes_of() { ip netns list | awk '{print $1}' | grep -E "^$1-n[0-9]+$" | sed "s/^$1-n//" | sort -n; }

create() {
    local prefix=$1 n=$2 hub="$1-hub" k link
    [ "$n" -ge 1 ] && [ "$n" -le 250 ] || die "node count $n out of 1..250"
    ip netns add "$hub"
    ip -n "$hub" link set lo up
    for link in 0 1; do
        ip -n "$hub" link add "br$link" type bridge
        ip -n "$hub" link set "br$link" up
    done
    for k in $(seq 1 "$n"); do
        local node; node=$(ns "$prefix" "$k")
        ip netns add "$node"
        ip -n "$node" link set lo up
        for link in 0 1; do
            ip -n "$hub" link add "n${k}l$link" type veth peer name "l$link" netns "$node"
            ip -n "$hub" link set "n${k}l$link" master "br$link" up
            ip -n "$node" addr add "$(addr "$k" "$link")/24" dev "l$link"
            ip -n "$node" link set "l$link" up
        done
        ip netns exec "$node" nft -f - <<EOF
table inet $FAULT_TABLE {
    chain in { type filter hook input priority 0; policy accept; }
    chain out { type filter hook output priority 0; policy accept; }
}
EOF
    done
}

destroy() {
    local prefix=$1 name pid
    for name in $(ip netns list | awk '{print $1}' | grep -E "^$prefix-(n[0-9]+|hub)$" || true); do
        for pid in $(ip netns pids "$name" 2>/dev/null || true); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        ip netns delete "$name" 2>/dev/null || true
    done
}

clean_stale() {
    local stem=$1 prefix pid
    for prefix in $(ip netns list | awk '{print $1}' | sed -nE "s/^($stem[0-9]+[a-z0-9]*)-(n[0-9]+|hub)$/\1/p" | sort -u); do
        pid=$(echo "$prefix" | sed -nE "s/^$stem([0-9]+).*/\1/p")
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            destroy "$prefix"
        fi
    done
}

nft_in() { ip netns exec "$(ns "$1" "$2")" nft "${@:3}"; }

rule() { nft_in "$1" "$2" add rule inet "$FAULT_TABLE" "${@:3}"; }

cut_link() {
    rule "$1" "$2" in iifname "l$3" drop
    rule "$1" "$2" out oifname "l$3" drop
}

partition() {
    local prefix=$1 a b k other set
    for side in 0 1; do
        if [ $side = 0 ]; then a=$2; b=$3; else a=$3; b=$2; fi
        set=""
        for other in $b; do set="$set$(addr "$other" 0), $(addr "$other" 1), "; done
        set="{ ${set%, } }"
        for k in $a; do
            rule "$prefix" "$k" in ip saddr "$set" drop
            rule "$prefix" "$k" out ip daddr "$set" drop
        done
    done
}

oneway() {
    if [ "$3" = all ]; then
        rule "$1" "$2" out oifname '{ "l0", "l1" }' drop
    else
        rule "$1" "$2" out oifname "l$3" drop
    fi
}

loss() {
    local prefix=$1 pct=$2 k
    [ "$pct" -ge 0 ] && [ "$pct" -le 100 ] || die "loss $pct % out of 0..100"
    shift 2
    for k in "$@"; do
        rule "$prefix" "$k" in meta l4proto udp numgen random mod 100 '<' "$pct" drop
    done
}

heal() {
    local prefix=$1 k
    shift
    for k in "$@"; do nft_in "$prefix" "$k" flush table inet "$FAULT_TABLE"; done
}

cmd=${1:-}
shift || true
case "$cmd" in
    create) create "$@" ;;
    destroy) destroy "$@" ;;
    clean-stale) clean_stale "$@" ;;
    cut-link) cut_link "$@" ;;
    isolate) cut_link "$1" "$2" 0; cut_link "$1" "$2" 1 ;;
    partition) partition "$@" ;;
    oneway) oneway "$@" ;;
    loss) loss "$@" ;;
    heal) heal "$@" ;;
    nodes) nodes_of "$@" ;;
    addr) addr "$@" ;;
    *) die "usage: netns.sh create|destroy|clean-stale|cut-link|isolate|partition|oneway|loss|heal|nodes|addr ..." ;;
esac
