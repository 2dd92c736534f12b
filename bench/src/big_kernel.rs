//! A valid compute kernel of about 1 MiB, built word by word: one long
//! straight-line function over a storage buffer (`data[gid] = f(data[gid])`
//! through tens of thousands of dependent integer operations). It passes
//! Tessera's gate and the Khronos validator, so validating it measures what a
//! large honest kernel costs.

/// Words of one instruction: the opcode with its word count, then operands.
fn inst(out: &mut Vec<u32>, opcode: u32, operands: &[u32]) {
    out.push(((operands.len() as u32 + 1) << 16) | opcode);
    out.extend_from_slice(operands);
}

/// A literal string operand: UTF-8, nul-terminated, padded to words.
fn string(s: &str) -> Vec<u32> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The kernel's bytes, at least `min_bytes` long (SPIR-V 1.3, entry point
/// "main", one storage buffer at set 0, binding 0, workgroup size 64).
pub fn kernel(min_bytes: usize) -> Vec<u8> {
    kernel_salted(min_bytes, 3)
}

/// Like [`kernel`], with `salt` as one of the chain's constants: another
/// salt is another kernel to a driver's shader cache.
pub fn kernel_salted(min_bytes: usize, salt: u32) -> Vec<u8> {
    // Ids.
    let (void, func, uint, v3, ptr_in, gid, rt, block, ptr_block, ptr_uint, buf) =
        (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
    let (c0, c1, c3, main, label) = (12, 13, 14, 15, 16);
    let mut next = 17u32;
    let mut body = Vec::new();
    let g = next;
    let x = next + 1;
    let p = next + 2;
    let mut v = next + 3;
    next += 4;
    inst(&mut body, 61, &[v3, g, gid]); // OpLoad
    inst(&mut body, 81, &[uint, x, g, 0]); // OpCompositeExtract
    inst(&mut body, 65, &[ptr_uint, p, buf, c0, x]); // OpAccessChain
    inst(&mut body, 61, &[uint, v, p]); // OpLoad
    let mut k = 0u32;
    while (body.len() + 200) * 4 < min_bytes {
        let r = next;
        next += 1;
        // IAdd, IMul, BitwiseXor in turn: nothing folds away.
        let (op, c) = match k % 3 {
            0 => (128, c1),
            1 => (132, c3),
            _ => (198, x),
        };
        inst(&mut body, op, &[uint, r, v, c]);
        v = r;
        k += 1;
    }
    inst(&mut body, 62, &[p, v]); // OpStore
    inst(&mut body, 253, &[]); // OpReturn

    let mut w = vec![0x0723_0203, 0x0001_0300, 0, next, 0];
    inst(&mut w, 17, &[1]); // OpCapability Shader
    inst(&mut w, 14, &[0, 1]); // OpMemoryModel Logical GLSL450
    let mut ep = vec![5, main]; // GLCompute
    ep.extend(string("main"));
    ep.push(gid);
    inst(&mut w, 15, &ep);
    inst(&mut w, 16, &[main, 17, 64, 1, 1]); // LocalSize 64 1 1
    inst(&mut w, 71, &[gid, 11, 28]); // BuiltIn GlobalInvocationId
    inst(&mut w, 71, &[rt, 6, 4]); // ArrayStride 4
    inst(&mut w, 72, &[block, 0, 35, 0]); // member 0 Offset 0
    inst(&mut w, 71, &[block, 2]); // Block
    inst(&mut w, 71, &[buf, 34, 0]); // DescriptorSet 0
    inst(&mut w, 71, &[buf, 33, 0]); // Binding 0
    inst(&mut w, 19, &[void]);
    inst(&mut w, 33, &[func, void]);
    inst(&mut w, 21, &[uint, 32, 0]);
    inst(&mut w, 23, &[v3, uint, 3]);
    inst(&mut w, 32, &[ptr_in, 1, v3]); // Input
    inst(&mut w, 59, &[ptr_in, gid, 1]);
    inst(&mut w, 29, &[rt, uint]);
    inst(&mut w, 30, &[block, rt]);
    inst(&mut w, 32, &[ptr_block, 12, block]); // StorageBuffer
    inst(&mut w, 32, &[ptr_uint, 12, uint]);
    inst(&mut w, 59, &[ptr_block, buf, 12]);
    inst(&mut w, 43, &[uint, c0, 0]);
    inst(&mut w, 43, &[uint, c1, 1]);
    inst(&mut w, 43, &[uint, c3, salt]);
    inst(&mut w, 54, &[void, main, 0, func]); // OpFunction
    inst(&mut w, 248, &[label]); // OpLabel
    w.extend(body);
    inst(&mut w, 56, &[]); // OpFunctionEnd
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}
