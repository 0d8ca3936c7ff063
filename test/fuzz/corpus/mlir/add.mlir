func.func @main(%x: tensor<4x8xf32>, %w: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %y = veomni.add %x, %w : tensor<4x8xf32>
  %z = veomni.exp %y : tensor<4x8xf32>
  return %z : tensor<4x8xf32>
}
