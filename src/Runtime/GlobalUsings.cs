// The namespaces most of the runtime's files open (the linked src/Shared files keep their own usings: the generator
// compiles them too).
global using System;
global using System.Collections.Generic;
global using System.IO;
global using System.Linq;
global using TorchSharp;
global using static TorchSharp.torch;
