//===- Registration.h - what every veomni tool registers --------*- C++ -*-===//

#ifndef VEOMNI_COMPILER_REGISTRATION_H
#define VEOMNI_COMPILER_REGISTRATION_H

namespace mlir {
class DialectRegistry;
namespace veomni {
/// Registers the dialects every veomni tool understands (veomni, vrt, and
/// upstream func, arith and tensor) and every veomni pass.
void registerAllVeOmni(DialectRegistry &registry);
} // namespace veomni
} // namespace mlir

#endif // VEOMNI_COMPILER_REGISTRATION_H
