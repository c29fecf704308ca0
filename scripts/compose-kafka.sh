#!/usr/bin/env bash
# The compose broker (apache/kafka image), secured as gridgov/infra/kafka.py secures the local one:
# SCRAM-SHA-256 on SASL_PLAINTEXT listeners, the StandardAuthorizer allowing nothing without an ACL,
# admin the only super user (written into the metadata at format time; the controller listener
# takes a static PLAIN login for admin alone). The other principals' SCRAM users are (re)created at
# every start from the compose file's secrets; `gridgov topics` (the init service) grants their ACLs.
set -euo pipefail
: "${CLUSTER_ID:?}" "${GRID_KAFKA_ADMIN_PASSWORD:?}"
PRINCIPALS=(validator producer sinks dashboard)
BIN=/opt/kafka/bin
CONFIG_DIR="$(mktemp -d)"  # holds passwords: private to this container's user
CONFIG="$CONFIG_DIR/server.properties"
ADMIN="$CONFIG_DIR/admin.properties"
READY=/tmp/grid-kafka-ready
rm -f "$READY"
umask 077

scram() { echo "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$1\" password=\"$2\";"; }
pw="$GRID_KAFKA_ADMIN_PASSWORD"
cat >"$CONFIG" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
listeners=CLIENT://:9092,CONTROLLER://:9093,HOST://:29092
advertised.listeners=CLIENT://kafka:9092,HOST://localhost:29092
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT,HOST:SASL_PLAINTEXT
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
sasl.mechanism.controller.protocol=PLAIN
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.client.scram-sha-256.sasl.jaas.config=$(scram admin "$pw")
listener.name.host.sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.host.scram-sha-256.sasl.jaas.config=$(scram admin "$pw")
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$pw" user_admin="$pw";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
log.dirs=/var/lib/kafka/data
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
cat >"$ADMIN" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=$(scram admin "$pw")
PROPERTIES

if [[ ! -f /var/lib/kafka/data/meta.properties ]]; then
    "$BIN/kafka-storage.sh" format -t "$CLUSTER_ID" -c "$CONFIG" \
        --add-scram "SCRAM-SHA-256=[name=admin,iterations=4096,password=$pw]"
fi
"$BIN/kafka-server-start.sh" "$CONFIG" &
broker=$!
trap 'kill -TERM "$broker"; wait "$broker"' TERM INT
until "$BIN/kafka-broker-api-versions.sh" --bootstrap-server localhost:9092 --command-config "$ADMIN" >/dev/null 2>&1; do
    kill -0 "$broker" || exit 1
    sleep 1
done
for user in "${PRINCIPALS[@]}"; do
    var="GRID_KAFKA_${user^^}_PASSWORD"
    "$BIN/kafka-configs.sh" --bootstrap-server localhost:9092 --command-config "$ADMIN" --alter \
        --entity-type users --entity-name "$user" --add-config "SCRAM-SHA-256=[iterations=4096,password=${!var:?set $var}]"
done
cp "$ADMIN" "$READY"  # the healthcheck logs in with it
wait "$broker"
