// The namespaces most of the runtime's files open. The linked src/Shared files rely on the first three being open here,
// as the generator opens them too.
global using System;
global using System.Collections.Generic;
global using System.Linq;
global using System.IO;
global using TorchSharp;
global using static TorchSharp.torch;
