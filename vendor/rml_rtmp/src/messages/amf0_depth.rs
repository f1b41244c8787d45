// storef patch 7: rml_amf0 0.3 decodes nested objects and arrays recursively with no depth
// limit, so a command or data message of a few hundred KB of `03 00 01 61` (object, property
// "a", object, …) or `0a 00 00 00 01` (strict array of one strict array, …) overflows the stack
// and aborts the whole process.  Before decoding, this walks the AMF0 bytes iteratively and
// refuses values nested deeper than `MAX_AMF0_DEPTH`.  The walk is permissive: wherever it does
// not understand the bytes it stops and leaves the verdict to rml_amf0's own errors.

/// Deeper than any real RTMP command or `onMetaData` (they nest two or three levels).
pub const MAX_AMF0_DEPTH: usize = 64;

enum Container {
    Object,
    Array(u32),
}

fn read_u16(data: &[u8], pos: usize) -> Option<usize> {
    let b = data.get(pos..pos + 2)?;
    Some(((b[0] as usize) << 8) | b[1] as usize)
}

fn read_u32(data: &[u8], pos: usize) -> Option<u32> {
    let b = data.get(pos..pos + 4)?;
    Some(((b[0] as u32) << 24) | ((b[1] as u32) << 16) | ((b[2] as u32) << 8) | b[3] as u32)
}

/// Whether the AMF0 values in `data` nest containers more than `max` deep.
pub fn nesting_exceeds(data: &[u8], max: usize) -> bool {
    let mut stack: Vec<Container> = Vec::new();
    let mut pos = 0;
    loop {
        // What comes next: a property of an object, an element of an array, or a top-level value.
        match stack.last_mut() {
            Some(Container::Object) => {
                let len = match read_u16(data, pos) {
                    Some(l) => l,
                    None => return false,
                };
                pos += 2;
                if len == 0 {
                    pos += 1; // object end marker
                    stack.pop();
                    continue;
                }
                pos += len;
            }
            Some(Container::Array(remaining)) => {
                if *remaining == 0 {
                    stack.pop();
                    continue;
                }
                *remaining -= 1;
            }
            None => {
                if pos >= data.len() {
                    return false;
                }
            }
        }
        let marker = match data.get(pos) {
            Some(m) => *m,
            None => return false,
        };
        pos += 1;
        match marker {
            0x00 => pos += 8,
            0x01 => pos += 1,
            0x02 => match read_u16(data, pos) {
                Some(l) => pos += 2 + l,
                None => return false,
            },
            0x03 => stack.push(Container::Object),
            0x05 | 0x06 => {}
            0x08 => {
                pos += 4;
                stack.push(Container::Object);
            }
            0x0a => match read_u32(data, pos) {
                Some(n) => {
                    pos += 4;
                    stack.push(Container::Array(n));
                }
                None => return false,
            },
            _ => return false,
        }
        if stack.len() > max {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_amf0::Amf0Value;
    use std::collections::HashMap;

    #[test]
    fn real_commands_pass() {
        let mut inner = HashMap::new();
        inner.insert("x".to_string(), Amf0Value::StrictArray(vec![Amf0Value::Number(1.0)]));
        let mut outer = HashMap::new();
        outer.insert("app".to_string(), Amf0Value::Utf8String("live".to_string()));
        outer.insert("o".to_string(), Amf0Value::Object(inner));
        let bytes = rml_amf0::serialize(&vec![
            Amf0Value::Utf8String("connect".to_string()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(outer),
            Amf0Value::Null,
        ])
        .unwrap();
        // object → object → strict array: three levels.
        assert!(!nesting_exceeds(&bytes, 3));
        assert!(nesting_exceeds(&bytes, 2));
    }

    #[test]
    fn deep_objects_and_arrays_are_caught() {
        let objects: Vec<u8> = [3u8, 0, 1, b'a'].iter().cycle().take(4 * 100_000).copied().collect();
        assert!(nesting_exceeds(&objects, MAX_AMF0_DEPTH));
        let arrays: Vec<u8> = [0x0au8, 0, 0, 0, 1].iter().cycle().take(5 * 100_000).copied().collect();
        assert!(nesting_exceeds(&arrays, MAX_AMF0_DEPTH));
    }
}
