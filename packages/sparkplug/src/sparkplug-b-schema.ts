import { create, createFileRegistry, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import {
  FeatureSet_Utf8Validation,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  type DescriptorProtoSchema,
  type FieldDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";

// The Sparkplug B payload schema, written from the Eclipse Sparkplug 3.0.0 specification,
// section 6.4.1 ("Google Protocol Buffer Schema"): proto2, package org.eclipse.tahu.protobuf.
// It is held as a descriptor built at run time (no .proto parser, no code generation step, no
// generated file), see docs/adr/0023-sparkplug-protobuf-library.md.

const PACKAGE = "org.eclipse.tahu.protobuf";
const ref = (path: string): string => `.${PACKAGE}.Payload.${path}`;

type FieldInit = MessageInitShape<typeof FieldDescriptorProtoSchema>;
type MessageInit = MessageInitShape<typeof DescriptorProtoSchema>;

function optional(name: string, number: number, type: Type, typeName?: string, oneofIndex?: number): FieldInit {
  return {
    name,
    number,
    label: Label.OPTIONAL,
    type,
    ...(typeName === undefined ? {} : { typeName }),
    ...(oneofIndex === undefined ? {} : { oneofIndex }),
  };
}

function repeated(name: string, number: number, type: Type, typeName?: string): FieldInit {
  return { name, number, label: Label.REPEATED, type, ...(typeName === undefined ? {} : { typeName }) };
}

/** A message with nothing but an extension range: the spec's `*Extension` placeholders. */
function extensionOnly(name: string, start: number): MessageInit {
  return { name, extensionRange: [{ start, end: 536_870_912 }] };
}

/** The `oneof value` members shared by Parameter, DataSetValue, PropertyValue and Metric, from `first` on. */
function scalarOneof(first: number): FieldInit[] {
  return [
    optional("int_value", first, Type.UINT32, undefined, 0),
    optional("long_value", first + 1, Type.UINT64, undefined, 0),
    optional("float_value", first + 2, Type.FLOAT, undefined, 0),
    optional("double_value", first + 3, Type.DOUBLE, undefined, 0),
    optional("boolean_value", first + 4, Type.BOOL, undefined, 0),
    optional("string_value", first + 5, Type.STRING, undefined, 0),
  ];
}

const template: MessageInit = {
  name: "Template",
  field: [
    optional("version", 1, Type.STRING),
    repeated("metrics", 2, Type.MESSAGE, ref("Metric")),
    repeated("parameters", 3, Type.MESSAGE, ref("Template.Parameter")),
    optional("template_ref", 4, Type.STRING),
    optional("is_definition", 5, Type.BOOL),
  ],
  nestedType: [
    {
      name: "Parameter",
      field: [
        optional("name", 1, Type.STRING),
        optional("type", 2, Type.UINT32),
        ...scalarOneof(3),
        optional("extension_value", 9, Type.MESSAGE, ref("Template.Parameter.ParameterValueExtension"), 0),
      ],
      nestedType: [extensionOnly("ParameterValueExtension", 1)],
      oneofDecl: [{ name: "value" }],
    },
  ],
  extensionRange: [{ start: 6, end: 536_870_912 }],
};

const dataSet: MessageInit = {
  name: "DataSet",
  field: [
    optional("num_of_columns", 1, Type.UINT64),
    repeated("columns", 2, Type.STRING),
    repeated("types", 3, Type.UINT32),
    repeated("rows", 4, Type.MESSAGE, ref("DataSet.Row")),
  ],
  nestedType: [
    {
      name: "DataSetValue",
      field: [
        ...scalarOneof(1),
        optional("extension_value", 7, Type.MESSAGE, ref("DataSet.DataSetValue.DataSetValueExtension"), 0),
      ],
      nestedType: [extensionOnly("DataSetValueExtension", 1)],
      oneofDecl: [{ name: "value" }],
    },
    {
      name: "Row",
      field: [repeated("elements", 1, Type.MESSAGE, ref("DataSet.DataSetValue"))],
      extensionRange: [{ start: 2, end: 536_870_912 }],
    },
  ],
  extensionRange: [{ start: 5, end: 536_870_912 }],
};

const propertyValue: MessageInit = {
  name: "PropertyValue",
  field: [
    optional("type", 1, Type.UINT32),
    optional("is_null", 2, Type.BOOL),
    ...scalarOneof(3),
    optional("propertyset_value", 9, Type.MESSAGE, ref("PropertySet"), 0),
    optional("propertysets_value", 10, Type.MESSAGE, ref("PropertySetList"), 0),
    optional("extension_value", 11, Type.MESSAGE, ref("PropertyValue.PropertyValueExtension"), 0),
  ],
  nestedType: [extensionOnly("PropertyValueExtension", 1)],
  oneofDecl: [{ name: "value" }],
};

const propertySet: MessageInit = {
  name: "PropertySet",
  field: [repeated("keys", 1, Type.STRING), repeated("values", 2, Type.MESSAGE, ref("PropertyValue"))],
  extensionRange: [{ start: 3, end: 536_870_912 }],
};

const propertySetList: MessageInit = {
  name: "PropertySetList",
  field: [repeated("propertyset", 1, Type.MESSAGE, ref("PropertySet"))],
  extensionRange: [{ start: 2, end: 536_870_912 }],
};

const metaData: MessageInit = {
  name: "MetaData",
  field: [
    optional("is_multi_part", 1, Type.BOOL),
    optional("content_type", 2, Type.STRING),
    optional("size", 3, Type.UINT64),
    optional("seq", 4, Type.UINT64),
    optional("file_name", 5, Type.STRING),
    optional("file_type", 6, Type.STRING),
    optional("md5", 7, Type.STRING),
    optional("description", 8, Type.STRING),
  ],
  extensionRange: [{ start: 9, end: 536_870_912 }],
};

const metric: MessageInit = {
  name: "Metric",
  field: [
    optional("name", 1, Type.STRING),
    optional("alias", 2, Type.UINT64),
    optional("timestamp", 3, Type.UINT64),
    optional("datatype", 4, Type.UINT32),
    optional("is_historical", 5, Type.BOOL),
    optional("is_transient", 6, Type.BOOL),
    optional("is_null", 7, Type.BOOL),
    optional("metadata", 8, Type.MESSAGE, ref("MetaData")),
    optional("properties", 9, Type.MESSAGE, ref("PropertySet")),
    ...scalarOneof(10),
    optional("bytes_value", 16, Type.BYTES, undefined, 0),
    optional("dataset_value", 17, Type.MESSAGE, ref("DataSet"), 0),
    optional("template_value", 18, Type.MESSAGE, ref("Template"), 0),
    optional("extension_value", 19, Type.MESSAGE, ref("Metric.MetricValueExtension"), 0),
  ],
  nestedType: [extensionOnly("MetricValueExtension", 1)],
  oneofDecl: [{ name: "value" }],
};

const payload: MessageInit = {
  name: "Payload",
  field: [
    optional("timestamp", 1, Type.UINT64),
    repeated("metrics", 2, Type.MESSAGE, ref("Metric")),
    optional("seq", 3, Type.UINT64),
    optional("uuid", 4, Type.STRING),
    optional("body", 5, Type.BYTES),
  ],
  nestedType: [template, dataSet, propertyValue, propertySet, propertySetList, metaData, metric],
  extensionRange: [{ start: 6, end: 536_870_912 }],
};

const file = create(FileDescriptorProtoSchema, {
  name: "sparkplug_b.proto",
  package: PACKAGE,
  syntax: "proto2",
  // Strings are UTF-8 (Sparkplug 3.0.0, 6.4.1: protobuf `string`). proto2 does not check them, so
  // invalid bytes would decode to U+FFFD and two names differing only in them would merge
  // (issue 19): the decoder checks every string, and a payload holding an invalid one is refused.
  options: { features: { utf8Validation: FeatureSet_Utf8Validation.VERIFY } },
  messageType: [payload],
});

const registry = createFileRegistry(file, () => undefined);

function message(name: string): DescMessage {
  const found = registry.getMessage(`${PACKAGE}.${name}`);
  /* v8 ignore next -- the names below are the schema's own */
  if (found === undefined) throw new Error(`sparkplug_b schema has no message ${name}`);
  return found;
}

/** @internal the descriptor of `org.eclipse.tahu.protobuf.Payload`. */
export const PayloadSchema: DescMessage = message("Payload");
