// The namespaces the DSL's files use. The generator, which compiles some of them too, opens the same ones globally.
global using System;
global using System.Collections.Generic;
