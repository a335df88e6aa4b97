// The runtime's public API uses TorchSharp types, which are not CLS-compliant.
[assembly: System.CLSCompliant(false)]
