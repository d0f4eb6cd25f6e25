"""Serializes and deserializes records with Confluent's Python serializers, for the interop tests.

Reads one JSON request on stdin and prints one JSON answer on stdout:

  {"op": "serialize", "format": "avro" | "protobuf" | "json", "url": ..., "auth": "user:password" | null,
   "topic": ..., "is_key": false, "schema": <Avro or JSON Schema text>, "descriptor": <hex FileDescriptorProto>,
   "message": <full Protobuf message name>, "conf": {<serializer conf>}, "records": [<JSON records>]}
  -> {"data": [<hex wire-format bytes>]}

  {"op": "deserialize", ... "data": [<hex>]} -> {"records": [<JSON records>]}

Protobuf message classes are built at run time from the descriptor the test passes in (no generated code).
"""

import json
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext


def registry(request):
    conf = {"url": request["url"]}
    if request.get("auth"):
        conf["basic.auth.user.info"] = request["auth"]
    return SchemaRegistryClient(conf)


def message_class(request):
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto.FromString(bytes.fromhex(request["descriptor"]))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(request["message"]))


def serializer(request, client):
    conf = request.get("conf") or {}
    fmt = request["format"]
    if fmt == "avro":
        from confluent_kafka.schema_registry.avro import AvroSerializer

        return AvroSerializer(client, request["schema"], conf=conf), lambda r: r
    if fmt == "json":
        from confluent_kafka.schema_registry.json_schema import JSONSerializer

        return JSONSerializer(request["schema"], client, conf=conf), lambda r: r
    if fmt == "protobuf":
        from google.protobuf import json_format
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer

        cls = message_class(request)
        return ProtobufSerializer(cls, client, conf=conf), lambda r: json_format.ParseDict(r, cls())
    raise ValueError("unknown format " + fmt)


def deserializer(request, client):
    fmt = request["format"]
    if fmt == "avro":
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        return AvroDeserializer(client, request.get("schema")), lambda r: r
    if fmt == "json":
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer

        return JSONDeserializer(request["schema"], schema_registry_client=client), lambda r: r
    if fmt == "protobuf":
        from google.protobuf import json_format
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer

        cls = message_class(request)

        def to_dict(message):
            return json_format.MessageToDict(message, preserving_proto_field_name=True)

        return ProtobufDeserializer(cls, {}, schema_registry_client=client), to_dict
    raise ValueError("unknown format " + fmt)


def main():
    request = json.load(sys.stdin)
    client = registry(request)
    field = MessageField.KEY if request.get("is_key") else MessageField.VALUE
    ctx = SerializationContext(request["topic"], field)
    if request["op"] == "serialize":
        serialize, convert = serializer(request, client)
        data = [serialize(convert(record), ctx).hex() for record in request["records"]]
        json.dump({"data": data}, sys.stdout)
    elif request["op"] == "deserialize":
        deserialize, convert = deserializer(request, client)
        records = [convert(deserialize(bytes.fromhex(d), ctx)) for d in request["data"]]
        json.dump({"records": records}, sys.stdout)
    else:
        raise ValueError("unknown op " + request["op"])


if __name__ == "__main__":
    main()
