// One Llama-style decoder layer in the veomni dialect, global shapes, no
// parallelism: what the frontends emit per layer. `scripts/demo.sh` parses,
// verifies and canonicalizes it (the transposes fold into the matmuls).
func.func @forward(
    %norm1: tensor<64xf32> {veomni.param = "model.layers.0.input_layernorm.weight"},
    %wq: tensor<64x64xf32> {veomni.param = "model.layers.0.self_attn.q_proj.weight"},
    %wk: tensor<32x64xf32> {veomni.param = "model.layers.0.self_attn.k_proj.weight"},
    %wv: tensor<32x64xf32> {veomni.param = "model.layers.0.self_attn.v_proj.weight"},
    %wo: tensor<64x64xf32> {veomni.param = "model.layers.0.self_attn.o_proj.weight"},
    %norm2: tensor<64xf32> {veomni.param = "model.layers.0.post_attention_layernorm.weight"},
    %wg: tensor<128x64xf32> {veomni.param = "model.layers.0.mlp.gate_proj.weight"},
    %wu: tensor<128x64xf32> {veomni.param = "model.layers.0.mlp.up_proj.weight"},
    %wd: tensor<64x128xf32> {veomni.param = "model.layers.0.mlp.down_proj.weight"},
    %x: tensor<2x16x64xf32> {veomni.input = "hidden_states"},
    %pos: tensor<2x16xi32> {veomni.input = "position_ids"}) -> tensor<2x16x64xf32> {
  %h = veomni.rms_norm %x, %norm1 {epsilon = 1.0e-6 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  // q/k/v projections written with explicit transposes of the HF [out, in]
  // weights; canonicalization turns them into matmul flags.
  %wqt = veomni.transpose %wq perm = [1, 0] : tensor<64x64xf32>
  %q0 = veomni.matmul %h, %wqt : tensor<2x16x64xf32>, tensor<64x64xf32>
  %k0 = veomni.matmul %h, %wk {transpose_rhs} : tensor<2x16x64xf32>, tensor<32x64xf32>
  %v0 = veomni.matmul %h, %wv {transpose_rhs} : tensor<2x16x64xf32>, tensor<32x64xf32>
  %q1 = veomni.reshape %q0 : tensor<2x16x64xf32> to tensor<2x16x4x16xf32>
  %k1 = veomni.reshape %k0 : tensor<2x16x32xf32> to tensor<2x16x2x16xf32>
  %v1 = veomni.reshape %v0 : tensor<2x16x32xf32> to tensor<2x16x2x16xf32>
  %q = veomni.rope %q1, %pos {theta = 10000.0 : f64} : tensor<2x16x4x16xf32>, tensor<2x16xi32>
  %k = veomni.rope %k1, %pos {theta = 10000.0 : f64} : tensor<2x16x2x16xf32>, tensor<2x16xi32>
  %a = veomni.attention %q, %k, %v1 {causal, scale = 0.25 : f64} : tensor<2x16x4x16xf32>, tensor<2x16x2x16xf32>, tensor<2x16x2x16xf32>
  %a1 = veomni.reshape %a : tensor<2x16x4x16xf32> to tensor<2x16x64xf32>
  %o = veomni.matmul %a1, %wo {transpose_rhs} : tensor<2x16x64xf32>, tensor<64x64xf32>
  %r1 = veomni.add %x, %o : tensor<2x16x64xf32>
  %h2 = veomni.rms_norm %r1, %norm2 {epsilon = 1.0e-6 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  %g = veomni.matmul %h2, %wg {transpose_rhs} : tensor<2x16x64xf32>, tensor<128x64xf32>
  %u = veomni.matmul %h2, %wu {transpose_rhs} : tensor<2x16x64xf32>, tensor<128x64xf32>
  %sg = veomni.silu %g : tensor<2x16x128xf32>
  %gu = veomni.mul %sg, %u : tensor<2x16x128xf32>
  %d = veomni.matmul %gu, %wd {transpose_rhs} : tensor<2x16x128xf32>, tensor<64x128xf32>
  %r2 = veomni.add %r1, %d : tensor<2x16x64xf32>
  return %r2 : tensor<2x16x64xf32>
}
