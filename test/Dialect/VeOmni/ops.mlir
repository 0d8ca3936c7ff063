// RUN: veomni-opt %s -allow-unregistered-dialect | veomni-opt -allow-unregistered-dialect | FileCheck %s
// RUN: veomni-opt %s -allow-unregistered-dialect -mlir-print-op-generic | veomni-opt -allow-unregistered-dialect | FileCheck %s

// Every veomni op, printed, parsed back and printed again.

// CHECK-LABEL: func.func @constants
func.func @constants() -> (tensor<4x8xbf16>, tensor<2xi32>) {
  // CHECK: veomni.constant dense<0.000000e+00> : tensor<4x8xbf16>
  %0 = veomni.constant dense<0.0> : tensor<4x8xbf16>
  // CHECK: veomni.constant dense<[1, 2]> : tensor<2xi32>
  %1 = veomni.constant dense<[1, 2]> : tensor<2xi32>
  return %0, %1 : tensor<4x8xbf16>, tensor<2xi32>
}

// CHECK-LABEL: func.func @linear_algebra
func.func @linear_algebra(%x: tensor<2x16x64xf32>, %w: tensor<128x64xf32>,
                          %b: tensor<2x64x32xf32>, %xt: tensor<2x64x16xf32>) {
  // CHECK: %{{.*}} = veomni.matmul %{{.*}}, %{{.*}} {transpose_rhs} : tensor<2x16x64xf32>, tensor<128x64xf32>
  %0 = veomni.matmul %x, %w {transpose_rhs} : tensor<2x16x64xf32>, tensor<128x64xf32>
  // CHECK: veomni.matmul %{{.*}}, %{{.*}} : tensor<2x16x64xf32>, tensor<2x64x32xf32>
  %1 = veomni.matmul %x, %b : tensor<2x16x64xf32>, tensor<2x64x32xf32>
  // CHECK: veomni.matmul %{{.*}}, %{{.*}} {transpose_lhs} : tensor<2x64x16xf32>, tensor<2x64x32xf32>
  %2 = veomni.matmul %xt, %b {transpose_lhs} : tensor<2x64x16xf32>, tensor<2x64x32xf32>
  "test.use"(%0, %1, %2) : (tensor<2x16x128xf32>, tensor<2x16x32xf32>, tensor<2x16x32xf32>) -> ()
  return
}

// CHECK-LABEL: func.func @grouped_matmul
func.func @grouped_matmul(%x: tensor<12x64xbf16>, %w: tensor<4x32x64xbf16>,
                          %g: tensor<4xi32>) -> tensor<12x32xbf16> {
  // CHECK: veomni.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} {transpose_weight} : tensor<12x64xbf16>, tensor<4x32x64xbf16>, tensor<4xi32>
  %0 = veomni.grouped_matmul %x, %w, %g {transpose_weight} : tensor<12x64xbf16>, tensor<4x32x64xbf16>, tensor<4xi32>
  return %0 : tensor<12x32xbf16>
}

// CHECK-LABEL: func.func @conv1d
func.func @conv1d(%x: tensor<2x80x300xf32>, %w: tensor<64x80x3xf32>,
                  %b: tensor<64xf32>) -> (tensor<2x64x300xf32>, tensor<2x64x150xf32>) {
  // CHECK: veomni.conv1d %{{.*}}, %{{.*}}, %{{.*}} {padding = 1 : i64} : tensor<2x80x300xf32>, tensor<64x80x3xf32>, tensor<64xf32>
  %0 = veomni.conv1d %x, %w, %b {padding = 1} : tensor<2x80x300xf32>, tensor<64x80x3xf32>, tensor<64xf32>
  // CHECK: veomni.conv1d %{{.*}}, %{{.*}} {padding = 1 : i64, stride = 2 : i64} : tensor<2x80x300xf32>, tensor<64x80x3xf32>
  %1 = veomni.conv1d %x, %w {stride = 2, padding = 1} : tensor<2x80x300xf32>, tensor<64x80x3xf32>
  return %0, %1 : tensor<2x64x300xf32>, tensor<2x64x150xf32>
}

// CHECK-LABEL: func.func @elementwise
func.func @elementwise(%a: tensor<4x8xf16>, %b: tensor<4x8xf16>) -> tensor<4x8xf16> {
  // CHECK: veomni.add %{{.*}}, %{{.*}} : tensor<4x8xf16>
  %0 = veomni.add %a, %b : tensor<4x8xf16>
  // CHECK: veomni.sub
  %1 = veomni.sub %0, %b : tensor<4x8xf16>
  // CHECK: veomni.mul
  %2 = veomni.mul %1, %b : tensor<4x8xf16>
  // CHECK: veomni.div
  %3 = veomni.div %2, %b : tensor<4x8xf16>
  // CHECK: veomni.neg %{{.*}} : tensor<4x8xf16>
  %4 = veomni.neg %3 : tensor<4x8xf16>
  // CHECK: veomni.exp
  %5 = veomni.exp %4 : tensor<4x8xf16>
  // CHECK: veomni.log
  %6 = veomni.log %5 : tensor<4x8xf16>
  // CHECK: veomni.sqrt
  %7 = veomni.sqrt %6 : tensor<4x8xf16>
  // CHECK: veomni.rsqrt
  %8 = veomni.rsqrt %7 : tensor<4x8xf16>
  // CHECK: veomni.sin
  %s = veomni.sin %8 : tensor<4x8xf16>
  // CHECK: veomni.cos
  %c = veomni.cos %s : tensor<4x8xf16>
  // CHECK: veomni.tanh
  %9 = veomni.tanh %c : tensor<4x8xf16>
  // CHECK: veomni.sigmoid
  %10 = veomni.sigmoid %9 : tensor<4x8xf16>
  // CHECK: veomni.silu
  %11 = veomni.silu %10 : tensor<4x8xf16>
  // CHECK: veomni.gelu %{{.*}} : tensor<4x8xf16>
  %12 = veomni.gelu %11 : tensor<4x8xf16>
  // CHECK: veomni.gelu %{{.*}} {approximation = #veomni<gelu_approximation tanh>} : tensor<4x8xf16>
  %13 = veomni.gelu %12 {approximation = #veomni<gelu_approximation tanh>} : tensor<4x8xf16>
  return %13 : tensor<4x8xf16>
}

// CHECK-LABEL: func.func @casts
func.func @casts(%a: tensor<4x8xf32>, %ids: tensor<4xi64>) -> (tensor<4x8xbf16>, tensor<4xf32>) {
  // CHECK: veomni.cast %{{.*}} : tensor<4x8xf32> to tensor<4x8xbf16>
  %0 = veomni.cast %a : tensor<4x8xf32> to tensor<4x8xbf16>
  // CHECK: veomni.cast %{{.*}} : tensor<4xi64> to tensor<4xf32>
  %1 = veomni.cast %ids : tensor<4xi64> to tensor<4xf32>
  return %0, %1 : tensor<4x8xbf16>, tensor<4xf32>
}

// CHECK-LABEL: func.func @reductions
func.func @reductions(%x: tensor<2x16x64xf32>, %w: tensor<64xf32>, %b: tensor<64xf32>) {
  // CHECK: veomni.reduce sum %{{.*}} dims = [1] keep_dims : tensor<2x16x64xf32>
  %0 = veomni.reduce sum %x dims = [1] keep_dims : tensor<2x16x64xf32>
  // CHECK: veomni.reduce max %{{.*}} dims = [0, 2] : tensor<2x16x64xf32>
  %1 = veomni.reduce max %x dims = [0, 2] : tensor<2x16x64xf32>
  // CHECK: veomni.reduce mean %{{.*}} dims = [2] : tensor<2x16x64xf32>
  %2 = veomni.reduce mean %x dims = [2] : tensor<2x16x64xf32>
  // CHECK: veomni.softmax %{{.*}} dim = 2 : tensor<2x16x64xf32>
  %3 = veomni.softmax %x dim = 2 : tensor<2x16x64xf32>
  // CHECK: veomni.rms_norm %{{.*}}, %{{.*}} {epsilon = 9.9999999999999995E-7 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  %4 = veomni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  // CHECK: veomni.layer_norm %{{.*}}, %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64} : tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>
  %5 = veomni.layer_norm %x, %w, %b {epsilon = 1.0e-5 : f64} : tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>
  // CHECK: veomni.layer_norm %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  %6 = veomni.layer_norm %x, %w {epsilon = 1.0e-5 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  "test.use"(%0, %1, %2, %3, %4, %5, %6) : (tensor<2x1x64xf32>, tensor<16xf32>, tensor<2x16xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> ()
  return
}

// CHECK-LABEL: func.func @shapes
func.func @shapes(%x: tensor<2x16x64xf32>, %y: tensor<2x4x64xf32>, %v: tensor<64xf32>) {
  // CHECK: veomni.broadcast %{{.*}} dims = [2] : tensor<64xf32> to tensor<2x16x64xf32>
  %0 = veomni.broadcast %v dims = [2] : tensor<64xf32> to tensor<2x16x64xf32>
  // CHECK: veomni.reshape %{{.*}} : tensor<2x16x64xf32> to tensor<2x16x4x16xf32>
  %1 = veomni.reshape %x : tensor<2x16x64xf32> to tensor<2x16x4x16xf32>
  // CHECK: veomni.transpose %{{.*}} perm = [0, 2, 1, 3] : tensor<2x16x4x16xf32>
  %2 = veomni.transpose %1 perm = [0, 2, 1, 3] : tensor<2x16x4x16xf32>
  // CHECK: veomni.slice %{{.*}} start = [0, 1, 0] limit = [2, 16, 64] step = [1, 2, 1] : tensor<2x16x64xf32>
  %3 = veomni.slice %x start = [0, 1, 0] limit = [2, 16, 64] step = [1, 2, 1] : tensor<2x16x64xf32>
  // CHECK: veomni.concat %{{.*}}, %{{.*}} dim = 1 : tensor<2x16x64xf32>, tensor<2x4x64xf32>
  %4 = veomni.concat %x, %y dim = 1 : tensor<2x16x64xf32>, tensor<2x4x64xf32>
  "test.use"(%0, %2, %3, %4) : (tensor<2x16x64xf32>, tensor<2x4x16x16xf32>, tensor<2x8x64xf32>, tensor<2x20x64xf32>) -> ()
  return
}

// CHECK-LABEL: func.func @indexing
func.func @indexing(%table: tensor<1000x64xf32>, %ids: tensor<2x16xi32>,
                    %upd: tensor<2x16x64xf32>) -> (tensor<2x16x64xf32>, tensor<1000x64xf32>) {
  // CHECK: veomni.gather %{{.*}}[%{{.*}}] axis = 0 : tensor<1000x64xf32>, tensor<2x16xi32>
  %0 = veomni.gather %table[%ids] axis = 0 : tensor<1000x64xf32>, tensor<2x16xi32>
  // CHECK: veomni.scatter_add %{{.*}} into %{{.*}}[%{{.*}}] axis = 0 : tensor<2x16x64xf32>, tensor<1000x64xf32>, tensor<2x16xi32>
  %1 = veomni.scatter_add %upd into %table[%ids] axis = 0 : tensor<2x16x64xf32>, tensor<1000x64xf32>, tensor<2x16xi32>
  return %0, %1 : tensor<2x16x64xf32>, tensor<1000x64xf32>
}

// CHECK-LABEL: func.func @transformer
func.func @transformer(%q: tensor<2x16x8x64xbf16>, %k: tensor<2x16x2x64xbf16>,
                       %v: tensor<2x16x2x64xbf16>, %pos: tensor<2x16xi32>,
                       %mpos: tensor<3x2x16xi64>, %seg: tensor<2x16xi32>,
                       %logits: tensor<2x16x1000xf32>, %labels: tensor<2x16xi64>) {
  // CHECK: veomni.rope %{{.*}}, %{{.*}} {theta = 1.000000e+06 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16xi32>
  %0 = veomni.rope %q, %pos {theta = 1.0e6 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16xi32>
  // CHECK: veomni.rope %{{.*}}, %{{.*}} {mrope_section = array<i64: 8, 12, 12>, theta = 1.000000e+04 : f64} : tensor<2x16x8x64xbf16>, tensor<3x2x16xi64>
  %1 = veomni.rope %q, %mpos {theta = 1.0e4 : f64, mrope_section = array<i64: 8, 12, 12>} : tensor<2x16x8x64xbf16>, tensor<3x2x16xi64>
  // CHECK: veomni.rope %{{.*}}, %{{.*}} {mrope_interleaved, mrope_section = array<i64: 12, 10, 10>, theta = 1.000000e+04 : f64} : tensor<2x16x8x64xbf16>, tensor<3x2x16xi64>
  %ri = veomni.rope %q, %mpos {theta = 1.0e4 : f64, mrope_section = array<i64: 12, 10, 10>, mrope_interleaved} : tensor<2x16x8x64xbf16>, tensor<3x2x16xi64>
  // CHECK: veomni.rope %{{.*}}, %{{.*}} {attention_scaling = 1.200000e+00 : f64, inv_freq = array<f32: 1.000000e+00, 5.000000e-01>, theta = 1.000000e+04 : f64} : tensor<2x16x2x4xbf16>, tensor<2x16xi32>
  %kk = veomni.slice %k start = [0, 0, 0, 0] limit = [2, 16, 2, 4] step = [1, 1, 1, 1] : tensor<2x16x2x64xbf16>
  %2 = veomni.rope %kk, %pos {theta = 1.0e4 : f64, inv_freq = array<f32: 1.0, 0.5>, attention_scaling = 1.2 : f64} : tensor<2x16x2x4xbf16>, tensor<2x16xi32>
  // CHECK: veomni.attention %{{.*}}, %{{.*}}, %{{.*}} {causal, scale = 1.250000e-01 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>
  %3 = veomni.attention %0, %k, %v {causal, scale = 0.125 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>
  // CHECK: veomni.attention %{{.*}}, %{{.*}}, %{{.*}} segments %{{.*}} {scale = 1.250000e-01 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16xi32>
  %4 = veomni.attention %0, %k, %v segments %seg {scale = 0.125 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16xi32>
  // CHECK: veomni.cross_entropy %{{.*}}, %{{.*}} : tensor<2x16x1000xf32>, tensor<2x16xi64>
  %5 = veomni.cross_entropy %logits, %labels : tensor<2x16x1000xf32>, tensor<2x16xi64>
  // CHECK: veomni.cross_entropy %{{.*}}, %{{.*}} {ignore_index = -1 : i64, reduction = #veomni<loss_reduction none>} : tensor<2x16x1000xf32>, tensor<2x16xi64>
  %6 = veomni.cross_entropy %logits, %labels {ignore_index = -1, reduction = #veomni<loss_reduction none>} : tensor<2x16x1000xf32>, tensor<2x16xi64>
  "test.use"(%1, %2, %3, %4, %5, %6) : (tensor<2x16x8x64xbf16>, tensor<2x16x2x4xbf16>, tensor<2x16x8x64xbf16>, tensor<2x16x8x64xbf16>, tensor<f32>, tensor<2x16xf32>) -> ()
  return
}

// CHECK-LABEL: func.func @clamp
func.func @clamp(%x: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) {
  // CHECK: veomni.clamp %{{.*}} {max = 7.000000e+00 : f64, min = -7.000000e+00 : f64} : tensor<4x8xf32>
  %0 = veomni.clamp %x {max = 7.0 : f64, min = -7.0 : f64} : tensor<4x8xf32>
  // CHECK: veomni.clamp %{{.*}} {max = 7.000000e+00 : f64} : tensor<4x8xf32>
  %1 = veomni.clamp %x {max = 7.0 : f64} : tensor<4x8xf32>
  // CHECK: veomni.clamp_grad %{{.*}}, %{{.*}} {min = 0.000000e+00 : f64} : tensor<4x8xf32>
  %2 = veomni.clamp_grad %x, %x {min = 0.0 : f64} : tensor<4x8xf32>
  return %0, %1, %2 : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
}

// CHECK-LABEL: func.func @moe_group_topk
func.func @moe_group_topk(%s: tensor<16x8xf32>, %b: tensor<8xf32>, %g: tensor<16x2xf32>) -> (tensor<16x2xf32>, tensor<16x2xi32>, tensor<16x8xf32>) {
  // CHECK: veomni.moe_group_topk %{{.*}}, %{{.*}} {groups = 4 : i64, k = 2 : i64, normalize, scale = 2.500000e+00 : f64, topk_groups = 2 : i64} : tensor<16x8xf32>, tensor<8xf32>
  %w, %i = veomni.moe_group_topk %s, %b {k = 2, groups = 4, topk_groups = 2, normalize, scale = 2.5 : f64} : tensor<16x8xf32>, tensor<8xf32>
  // CHECK: veomni.moe_group_topk_grad %{{.*}}, %{{.*}}, %{{.*}} {groups = 4 : i64, k = 2 : i64, topk_groups = 2 : i64} : tensor<16x8xf32>, tensor<8xf32>, tensor<16x2xf32>
  %d = veomni.moe_group_topk_grad %s, %b, %g {k = 2, groups = 4, topk_groups = 2} : tensor<16x8xf32>, tensor<8xf32>, tensor<16x2xf32>
  return %w, %i, %d : tensor<16x2xf32>, tensor<16x2xi32>, tensor<16x8xf32>
}

// Sliding windows and sinks: the optional operands are told apart by type.
// CHECK-LABEL: func.func @attention_windows_and_sinks
func.func @attention_windows_and_sinks(%q: tensor<2x16x8x64xbf16>, %k: tensor<2x16x2x64xbf16>,
                                       %seg: tensor<2x16xi32>, %sinks: tensor<8xbf16>) {
  // CHECK: veomni.attention %{{.*}}, %{{.*}}, %{{.*}} sinks %{{.*}} {causal, scale = 1.250000e-01 : f64, window = 4 : i64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16> sinks tensor<8xbf16>
  %0 = veomni.attention %q, %k, %k sinks %sinks {causal, scale = 0.125 : f64, window = 4 : i64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16> sinks tensor<8xbf16>
  // CHECK: veomni.attention %{{.*}}, %{{.*}}, %{{.*}} segments %{{.*}} sinks %{{.*}} {causal, scale = 1.250000e-01 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16xi32> sinks tensor<8xbf16>
  %1 = veomni.attention %q, %k, %k segments %seg sinks %sinks {causal, scale = 0.125 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16xi32> sinks tensor<8xbf16>
  // CHECK: veomni.attention_grad %{{.*}}, %{{.*}}, %{{.*}} segments %{{.*}} sinks %{{.*}} grad %{{.*}} {causal, scale = 1.250000e-01 : f64, window = 2 : i64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x8x64xbf16>, tensor<2x16xi32> sinks tensor<8xbf16>
  %dq, %dk, %dv, %ds = veomni.attention_grad %q, %k, %k segments %seg sinks %sinks grad %q {causal, scale = 0.125 : f64, window = 2 : i64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x8x64xbf16>, tensor<2x16xi32> sinks tensor<8xbf16>
  "test.use"(%0, %1, %ds) : (tensor<2x16x8x64xbf16>, tensor<2x16x8x64xbf16>, tensor<8xbf16>) -> ()
  return
}

// Segments [2, B, S]: segment ids, then bidirectional blocks (Gemma 3).
// CHECK-LABEL: func.func @attention_blocks
func.func @attention_blocks(%q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>,
                            %seg: tensor<2x2x16xi32>) -> tensor<2x16x8x64xf32> {
  // CHECK: veomni.attention %{{.*}}, %{{.*}}, %{{.*}} segments %{{.*}} {causal, scale = 1.250000e-01 : f64, window = 4 : i64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<2x2x16xi32>
  %0 = veomni.attention %q, %k, %k segments %seg {causal, scale = 0.125 : f64, window = 4 : i64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<2x2x16xi32>
  return %0 : tensor<2x16x8x64xf32>
}

// CHECK-LABEL: func.func @moe
func.func @moe(%x: tensor<32x64xf32>, %router: tensor<32x8xf32>,
               %gate: tensor<8x128x64xf32>) -> tensor<32x64xf32> {
  // CHECK: %[[W:.*]], %[[I:.*]] = veomni.moe_topk %{{.*}} {k = 2 : i64, normalize} : tensor<32x8xf32>
  %w, %i = veomni.moe_topk %router {k = 2, normalize} : tensor<32x8xf32>
  // CHECK: %[[X:.*]], %[[G:.*]] = veomni.moe_dispatch %{{.*}}, %[[I]] {num_experts = 8 : i64} : tensor<32x64xf32>, tensor<32x2xi32>
  %xs, %groups = veomni.moe_dispatch %x, %i {num_experts = 8} : tensor<32x64xf32>, tensor<32x2xi32>
  // CHECK: veomni.grouped_matmul %[[X]], %{{.*}}, %[[G]] {transpose_weight} : tensor<64x64xf32>, tensor<8x128x64xf32>, tensor<8xi32>
  %h = veomni.grouped_matmul %xs, %gate, %groups {transpose_weight} : tensor<64x64xf32>, tensor<8x128x64xf32>, tensor<8xi32>
  // CHECK: veomni.grouped_matmul %{{.*}}, %{{.*}}, %[[G]] : tensor<64x128xf32>, tensor<8x128x64xf32>, tensor<8xi32>
  %y = veomni.grouped_matmul %h, %gate, %groups : tensor<64x128xf32>, tensor<8x128x64xf32>, tensor<8xi32>
  // CHECK: veomni.moe_combine %{{.*}}, %[[W]], %[[I]] : tensor<64x64xf32>, tensor<32x2xf32>, tensor<32x2xi32>
  %out = veomni.moe_combine %y, %w, %i : tensor<64x64xf32>, tensor<32x2xf32>, tensor<32x2xi32>
  return %out : tensor<32x64xf32>
}

// CHECK-LABEL: func.func @named_arguments
// CHECK-SAME: veomni.param = "model.embed_tokens.weight"
// CHECK-SAME: veomni.input = "input_ids"
func.func @named_arguments(%w: tensor<1000x64xf32> {veomni.param = "model.embed_tokens.weight"},
                           %ids: tensor<2x16xi32> {veomni.input = "input_ids"}) -> tensor<2x16x64xf32> {
  %0 = veomni.gather %w[%ids] axis = 0 : tensor<1000x64xf32>, tensor<2x16xi32>
  return %0 : tensor<2x16x64xf32>
}

// CHECK-LABEL: func.func @gradients
func.func @gradients(%x: tensor<2x16x64xf32>, %w: tensor<64xf32>,
                     %q: tensor<2x16x8x64xf32>, %k: tensor<2x16x2x64xf32>,
                     %seg: tensor<2x16xi32>, %pos: tensor<2x16xi32>,
                     %logits: tensor<2x16x100xf32>, %labels: tensor<2x16xi64>,
                     %dl: tensor<f32>) {
  // CHECK: veomni.rms_norm_grad %{{.*}}, %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  %dx, %dw = veomni.rms_norm_grad %x, %w, %x {epsilon = 1.0e-5 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  // CHECK: veomni.attention_grad %{{.*}}, %{{.*}}, %{{.*}} segments %{{.*}} grad %{{.*}} {causal, scale = 1.250000e-01 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x8x64xf32>, tensor<2x16xi32>
  %dq, %dk, %dv = veomni.attention_grad %q, %k, %k segments %seg grad %q {causal, scale = 0.125 : f64} : tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x8x64xf32>, tensor<2x16xi32>
  // CHECK: veomni.cross_entropy_grad %{{.*}}, %{{.*}}, %{{.*}} : tensor<2x16x100xf32>, tensor<2x16xi64>, tensor<f32>
  %dlogits = veomni.cross_entropy_grad %logits, %labels, %dl : tensor<2x16x100xf32>, tensor<2x16xi64>, tensor<f32>
  // CHECK: veomni.rope %{{.*}}, %{{.*}} {inverse, theta = 1.000000e+04 : f64}
  %r = veomni.rope %q, %pos {theta = 1.0e4 : f64, inverse} : tensor<2x16x8x64xf32>, tensor<2x16xi32>
  "test.use"(%dx, %dw, %dq, %dk, %dv, %dlogits, %r) : (tensor<2x16x64xf32>, tensor<64xf32>, tensor<2x16x8x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x2x64xf32>, tensor<2x16x100xf32>, tensor<2x16x8x64xf32>) -> ()
  return
}

// CHECK-LABEL: func.func @more_gradients
func.func @more_gradients(%x: tensor<2x16x64xf32>, %w: tensor<64xf32>,
                          %a: tensor<2x8x30xf32>, %cw: tensor<4x8x3xf32>,
                          %cb: tensor<4xf32>, %cg: tensor<2x4x15xf32>,
                          %xs: tensor<12x64xbf16>, %gw: tensor<4x32x64xbf16>,
                          %gs: tensor<4xi32>, %gg: tensor<12x32xbf16>,
                          %logits: tensor<6x4xf32>, %dwts: tensor<6x2xf32>,
                          %rows: tensor<12x64xf32>, %idx: tensor<6x2xi32>,
                          %gout: tensor<6x64xf32>, %sg: tensor<2x8x64xf32>,
                          %mg: tensor<2x64xf32>) {
  // CHECK: veomni.gelu_grad %{{.*}}, %{{.*}} : tensor<2x16x64xf32>
  %g0 = veomni.gelu_grad %x, %x : tensor<2x16x64xf32>
  // CHECK: veomni.gelu_grad %{{.*}}, %{{.*}} {approximation = #veomni<gelu_approximation tanh>} : tensor<2x16x64xf32>
  %g1 = veomni.gelu_grad %x, %x {approximation = #veomni<gelu_approximation tanh>} : tensor<2x16x64xf32>
  // CHECK: %{{.*}}, %{{.*}}, %{{.*}} = veomni.layer_norm_grad %{{.*}}, %{{.*}}, %{{.*}} grad %{{.*}} {epsilon = 1.000000e-05 : f64} : tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>
  %l0:3 = veomni.layer_norm_grad %x, %w, %w grad %x {epsilon = 1.0e-5 : f64} : tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>
  // CHECK: %{{.*}}, %{{.*}} = veomni.layer_norm_grad %{{.*}}, %{{.*}} grad %{{.*}} {epsilon = 1.000000e-05 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  %l1:2 = veomni.layer_norm_grad %x, %w grad %x {epsilon = 1.0e-5 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  // CHECK: veomni.slice_grad %{{.*}} start = [0, 1, 0] limit = [2, 16, 64] step = [1, 2, 1] : tensor<2x8x64xf32> to tensor<2x16x64xf32>
  %s = veomni.slice_grad %sg start = [0, 1, 0] limit = [2, 16, 64] step = [1, 2, 1] : tensor<2x8x64xf32> to tensor<2x16x64xf32>
  // CHECK: %{{.*}}, %{{.*}}, %{{.*}} = veomni.conv1d_grad %{{.*}}, %{{.*}}, %{{.*}} grad %{{.*}} {padding = 1 : i64, stride = 2 : i64} : tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<2x4x15xf32>, tensor<4xf32>
  %c0:3 = veomni.conv1d_grad %a, %cw, %cb grad %cg {stride = 2, padding = 1} : tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<2x4x15xf32>, tensor<4xf32>
  // CHECK: %{{.*}}, %{{.*}} = veomni.conv1d_grad %{{.*}}, %{{.*}} grad %{{.*}} {padding = 1 : i64, stride = 2 : i64} : tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<2x4x15xf32>
  %c1:2 = veomni.conv1d_grad %a, %cw grad %cg {stride = 2, padding = 1} : tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<2x4x15xf32>
  // CHECK: veomni.grouped_matmul_weight_grad %{{.*}}, %{{.*}}, %{{.*}} grad %{{.*}} {transpose_weight} : tensor<12x64xbf16>, tensor<4x32x64xbf16>, tensor<4xi32>, tensor<12x32xbf16>
  %gm = veomni.grouped_matmul_weight_grad %xs, %gw, %gs grad %gg {transpose_weight} : tensor<12x64xbf16>, tensor<4x32x64xbf16>, tensor<4xi32>, tensor<12x32xbf16>
  // CHECK: veomni.moe_topk_grad %{{.*}}, %{{.*}} {k = 2 : i64, normalize} : tensor<6x4xf32>, tensor<6x2xf32>
  %tk = veomni.moe_topk_grad %logits, %dwts {k = 2, normalize} : tensor<6x4xf32>, tensor<6x2xf32>
  // CHECK: %{{.*}}, %{{.*}} = veomni.moe_combine_grad %{{.*}}, %{{.*}}, %{{.*}} grad %{{.*}} : tensor<12x64xf32>, tensor<6x2xf32>, tensor<6x2xi32>, tensor<6x64xf32>
  %cg0:2 = veomni.moe_combine_grad %rows, %dwts, %idx grad %gout : tensor<12x64xf32>, tensor<6x2xf32>, tensor<6x2xi32>, tensor<6x64xf32>
  // CHECK: veomni.reduce_max_grad %{{.*}}, %{{.*}} dims = [1] : tensor<2x16x64xf32>, tensor<2x64xf32>
  %rm = veomni.reduce_max_grad %x, %mg dims = [1] : tensor<2x16x64xf32>, tensor<2x64xf32>
  // CHECK: veomni.reduce_max_grad %{{.*}}, %{{.*}} dims = [0, 2] keep_dims : tensor<2x16x64xf32>, tensor<1x16x1xf32>
  %k = veomni.constant dense<1.0> : tensor<1x16x1xf32>
  %rk = veomni.reduce_max_grad %x, %k dims = [0, 2] keep_dims : tensor<2x16x64xf32>, tensor<1x16x1xf32>
  "test.use"(%g0, %g1, %l0#0, %l0#1, %l0#2, %l1#0, %l1#1, %s, %c0#0, %c0#1, %c0#2, %c1#0, %c1#1, %gm, %tk, %cg0#0, %cg0#1, %rm, %rk) : (tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<2x16x64xf32>, tensor<64xf32>, tensor<2x16x64xf32>, tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<4xf32>, tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<4x32x64xbf16>, tensor<6x4xf32>, tensor<12x64xf32>, tensor<6x2xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> ()
  return
}

// Roles and modules round-trip.
// CHECK-LABEL: func.func @roles
// CHECK-SAME: (%{{.*}}: tensor<4xf32> {veomni.init = "ones", veomni.param = "w", veomni.role = #veomni<argument_role parameter>}, %{{.*}}: tensor<f32> {veomni.input = "step", veomni.role = #veomni<argument_role step>})
// CHECK-SAME: -> (tensor<4xf32> {veomni.grad = "w", veomni.role = #veomni<result_role gradient>})
// CHECK-SAME: attributes {test.module = #veomni.module<attention, layer = 3, backward>, veomni.role = #veomni<function_role gradients>}
func.func @roles(%w: tensor<4xf32> {veomni.param = "w", veomni.init = "ones", veomni.role = #veomni<argument_role parameter>},
                 %s: tensor<f32> {veomni.input = "step", veomni.role = #veomni<argument_role step>})
    -> (tensor<4xf32> {veomni.grad = "w", veomni.role = #veomni<result_role gradient>})
    attributes {veomni.role = #veomni<function_role gradients>,
                test.module = #veomni.module<attention, layer = 3, backward>} {
  return %w : tensor<4xf32>
}

// Sharding rules round-trip, every list included.
// CHECK-LABEL: func.func @sharding_rule
// CHECK-SAME: test.rule = #veomni.sharding_rule<([i, j, l*m, n], [i, k, l, n], []) -> ([i, j, l*m, n], [1, o]) {i=2, j=16, k=16, l=2, m=4, n=64, o=8} reduction={o} need_replication={j, k} internal={n} expert={m} per_shard={1} type_only={2} relocate={j->l, k->l}>
func.func @sharding_rule() attributes {test.rule = #veomni.sharding_rule<([i, j, l*m, n], [i, k, l, n], []) -> ([i, j, l*m, n], [1, o]) {i=2, j=16, k=16, l=2, m=4, n=64, o=8} reduction={o} need_replication={j, k} internal={n} expert={m} per_shard={1} type_only={2} relocate={j->l, k->l}>} {
  return
}
