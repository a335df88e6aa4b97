// The runtime is filled in by the training, data and distributed work; for now it carries the TorchSharp
// references and the native-library fix that every model project needs.
[assembly: System.CLSCompliant(false)]
