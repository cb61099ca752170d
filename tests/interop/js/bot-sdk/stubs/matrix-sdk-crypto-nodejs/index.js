// Stand-in for the native crypto bindings (see package.json): every export is a class whose
// constructor throws, so a code path that needs E2EE fails loudly instead of silently.
"use strict";
module.exports = new Proxy({}, {
    get(_target, name) {
        if (name === "__esModule") return false;
        return class {
            constructor() {
                throw new Error(`E2EE (${String(name)}) is not available in uzel's bot-sdk tests`);
            }
        };
    },
});
