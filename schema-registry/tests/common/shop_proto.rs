//! The Protobuf schema of the tests, built as a `FileDescriptorProto` (no protoc needed):
//!
//! ```proto
//! syntax = "proto3";
//! package shop;
//! message Order {
//!   int64 id = 1; string item = 2; double price = 3; repeated string tags = 4;
//!   Address address = 5; Status status = 6;
//!   string note = 7;                        // only in version 2
//!   message Address { string city = 1; int32 zip = 2; }
//! }
//! enum Status { NEW = 0; PAID = 1; }
//! message Refund { string order_id = 1; int32 amount = 2; }
//! ```

use prost_reflect::{DescriptorPool, MessageDescriptor};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
    FileDescriptorProto,
};

fn field(name: &str, number: i32, ty: Type, type_name: Option<&str>) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(ty as i32),
        type_name: type_name.map(Into::into),
        ..Default::default()
    }
}

/// The file; `with_note` gives version 2 (field `note` added to `Order`).
pub fn file(with_note: bool) -> FileDescriptorProto {
    let mut tags = field("tags", 4, Type::String, None);
    tags.label = Some(Label::Repeated as i32);
    let mut order_fields = vec![
        field("id", 1, Type::Int64, None),
        field("item", 2, Type::String, None),
        field("price", 3, Type::Double, None),
        tags,
        field("address", 5, Type::Message, Some(".shop.Order.Address")),
        field("status", 6, Type::Enum, Some(".shop.Status")),
    ];
    if with_note {
        order_fields.push(field("note", 7, Type::String, None));
    }
    FileDescriptorProto {
        name: Some("shop.proto".into()),
        package: Some("shop".into()),
        syntax: Some("proto3".into()),
        message_type: vec![
            DescriptorProto {
                name: Some("Order".into()),
                field: order_fields,
                nested_type: vec![DescriptorProto {
                    name: Some("Address".into()),
                    field: vec![
                        field("city", 1, Type::String, None),
                        field("zip", 2, Type::Int32, None),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            DescriptorProto {
                name: Some("Refund".into()),
                field: vec![
                    field("order_id", 1, Type::String, None),
                    field("amount", 2, Type::Int32, None),
                ],
                ..Default::default()
            },
        ],
        enum_type: vec![EnumDescriptorProto {
            name: Some("Status".into()),
            value: vec![
                EnumValueDescriptorProto {
                    name: Some("NEW".into()),
                    number: Some(0),
                    ..Default::default()
                },
                EnumValueDescriptorProto {
                    name: Some("PAID".into()),
                    number: Some(1),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The pool holding [`file`].
pub fn pool(with_note: bool) -> DescriptorPool {
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_proto(file(with_note))
        .expect("valid test descriptor");
    pool
}

/// A message type of [`pool`] by its full name.
pub fn message(with_note: bool, name: &str) -> MessageDescriptor {
    pool(with_note)
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("no message {name}"))
}
