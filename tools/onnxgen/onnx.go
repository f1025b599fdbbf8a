package main

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file writes the few ONNX messages the nets need (onnx.proto3, IR
// version 6, opset 11) straight with protowire: field numbers are those of
// onnx/onnx.proto. No ONNX library is needed for a graph of Conv, Relu,
// LeakyRelu, Add, Pad, pooling, Flatten, Gemm and Softmax.

// ONNX field numbers and enum values used below.
const (
	// ModelProto
	modelIRVersion    = 1
	modelProducerName = 2
	modelProducerVer  = 3
	modelGraph        = 7
	modelOpsetImport  = 8
	// OperatorSetIdProto
	opsetVersion = 2
	// GraphProto
	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12
	// NodeProto
	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	// AttributeProto
	attrName   = 1
	attrF      = 2
	attrI      = 3
	attrS      = 4
	attrInts   = 8
	attrType   = 20
	attrFloat  = 1
	attrInt    = 2
	attrString = 3
	attrINTS   = 7
	// TensorProto
	tensorDims     = 1
	tensorDataType = 2
	tensorName     = 8
	tensorRawData  = 9
	dtypeFloat     = 1
	dtypeInt64     = 7
	// ValueInfoProto / TypeProto / TensorShapeProto
	valueName       = 1
	valueType       = 2
	typeTensor      = 1
	tensorElemType  = 1
	tensorShape     = 2
	shapeDim        = 1
	dimValue        = 1
	irVersion       = 6
	opset           = 11
	producerName    = "aibo-privacyd tools/onnxgen"
	producerVersion = "1"
)

// attr is one node attribute: exactly one of the value fields is used.
type attr struct {
	name string
	i    *int64
	f    *float32
	s    string
	ints []int64
}

func intAttr(name string, v int64) attr     { return attr{name: name, i: &v} }
func floatAttr(name string, v float32) attr { return attr{name: name, f: &v} }
func intsAttr(name string, v ...int64) attr { return attr{name: name, ints: v} }
func strAttr(name, v string) attr           { return attr{name: name, s: v} }

// graph collects nodes and initializers; names are made unique by a counter.
type graph struct {
	name  string
	nodes [][]byte
	inits [][]byte
	n     int
}

func (g *graph) fresh(prefix string) string {
	g.n++
	return fmt.Sprintf("%s_%d", prefix, g.n)
}

// constFloat adds a float32 initializer of the given dims and returns its
// name.
func (g *graph) constFloat(data []float32, dims ...int) string {
	if numel(dims) != len(data) {
		panic(fmt.Sprintf("onnxgen: initializer of %d values for dims %v", len(data), dims))
	}
	name := g.fresh("w")
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	g.inits = append(g.inits, tensorProto(name, dtypeFloat, dims, raw))
	return name
}

// constInt64 adds an int64 initializer (1-D) and returns its name.
func (g *graph) constInt64(data ...int64) string {
	name := g.fresh("i")
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	g.inits = append(g.inits, tensorProto(name, dtypeInt64, []int{len(data)}, raw))
	return name
}

// op adds a node with one output and returns the output's name (out, or a
// fresh name when out is "").
func (g *graph) op(opType string, inputs []string, out string, attrs ...attr) string {
	if out == "" {
		out = g.fresh(opType)
	}
	var b []byte
	for _, in := range inputs {
		b = appendStringField(b, nodeInput, in)
	}
	b = appendStringField(b, nodeOutput, out)
	b = appendStringField(b, nodeName, out)
	b = appendStringField(b, nodeOpType, opType)
	for _, a := range attrs {
		b = appendBytesField(b, nodeAttribute, a.encode())
	}
	g.nodes = append(g.nodes, b)
	return out
}

func (a attr) encode() []byte {
	var b []byte
	b = appendStringField(b, attrName, a.name)
	switch {
	case a.i != nil:
		b = appendVarintField(b, attrI, uint64(*a.i))
		b = appendVarintField(b, attrType, attrInt)
	case a.f != nil:
		b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(*a.f))
		b = appendVarintField(b, attrType, attrFloat)
	case a.ints != nil:
		for _, v := range a.ints { // unpacked: what onnx's own writer emits
			b = appendVarintField(b, attrInts, uint64(v))
		}
		b = appendVarintField(b, attrType, attrINTS)
	default:
		b = appendStringField(b, attrS, a.s)
		b = appendVarintField(b, attrType, attrString)
	}
	return b
}

func tensorProto(name string, dtype int, dims []int, raw []byte) []byte {
	var b []byte
	for _, d := range dims {
		b = appendVarintField(b, tensorDims, uint64(d))
	}
	b = appendVarintField(b, tensorDataType, uint64(dtype))
	b = appendStringField(b, tensorName, name)
	b = appendBytesField(b, tensorRawData, raw)
	return b
}

// valueInfo describes a float tensor of fixed dims.
func valueInfo(name string, dims ...int) []byte {
	var shape []byte
	for _, d := range dims {
		var dim []byte
		dim = appendVarintField(dim, dimValue, uint64(d))
		shape = appendBytesField(shape, shapeDim, dim)
	}
	var tt []byte
	tt = appendVarintField(tt, tensorElemType, dtypeFloat)
	tt = appendBytesField(tt, tensorShape, shape)
	var typ []byte
	typ = appendBytesField(typ, typeTensor, tt)
	var b []byte
	b = appendStringField(b, valueName, name)
	b = appendBytesField(b, valueType, typ)
	return b
}

// model serialises the graph as a ModelProto with one input and one output.
func (g *graph) model(in []byte, out []byte) []byte {
	var gb []byte
	for _, n := range g.nodes {
		gb = appendBytesField(gb, graphNode, n)
	}
	gb = appendStringField(gb, graphName, g.name)
	for _, t := range g.inits {
		gb = appendBytesField(gb, graphInitializer, t)
	}
	gb = appendBytesField(gb, graphInput, in)
	gb = appendBytesField(gb, graphOutput, out)

	var os []byte
	os = appendVarintField(os, opsetVersion, opset)

	var b []byte
	b = appendVarintField(b, modelIRVersion, irVersion)
	b = appendStringField(b, modelProducerName, producerName)
	b = appendStringField(b, modelProducerVer, producerVersion)
	b = appendBytesField(b, modelGraph, gb)
	b = appendBytesField(b, modelOpsetImport, os)
	return b
}

func numel(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

// appendBytesField appends field num holding an embedded message or raw bytes.
func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendStringField appends field num holding a string.
func appendStringField(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendVarintField appends field num holding a varint.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}
