// The namespaces most of the generator's files open. The linked src/Shared files rely on System, System.Collections.Generic,
// System.Linq and the generator's Model namespace being open here, as the runtime opens the first three.
global using System;
global using System.Collections.Generic;
global using System.Globalization;
global using System.Linq;
global using System.Threading;
global using Microsoft.CodeAnalysis;
global using Microsoft.CodeAnalysis.CSharp;
global using Microsoft.CodeAnalysis.CSharp.Syntax;
global using ModelDsl.Generators.Diagnostics;
global using ModelDsl.Generators.Dsl;
global using ModelDsl.Generators.Model;
global using ModelDsl.Shapes;
