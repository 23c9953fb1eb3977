//! The binary COPY format (`COPY … TO STDOUT (FORMAT binary)`): a header, then rows of
//! length-prefixed fields, then a trailer. Rows are cut out of the stream as they complete,
//! whatever the chunks the server sent.

use arrow_array::RecordBatch;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;

use crate::columns::{Column, Rows};
use crate::config::SpecialValues;
use crate::error::{Context, Error, Result};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Cuts rows out of the chunks of a binary COPY.
#[derive(Default)]
pub struct Parser {
    buf: BytesMut,
    header_done: bool,
    ended: bool,
}

impl Parser {
    /// Adds the next chunk the server sent.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Whether the trailer has been read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next complete row, or `None` until more data comes (or after the trailer).
    pub fn next_row(&mut self) -> Result<Option<Row>> {
        if self.ended {
            return Ok(None);
        }
        if !self.header_done {
            if self.buf.len() < 19 {
                return Ok(None);
            }
            if &self.buf[..11] != SIGNATURE {
                return Err(Error::Data(
                    "the server's COPY is not in the binary format".into(),
                ));
            }
            let ext = u32::from_be_bytes(self.buf[15..19].try_into().expect("4 bytes")) as usize;
            if self.buf.len() < 19 + ext {
                return Ok(None);
            }
            self.buf.advance(19 + ext);
            self.header_done = true;
        }
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([self.buf[0], self.buf[1]]);
        if count == -1 {
            self.ended = true;
            self.buf.advance(2);
            return Ok(None);
        }
        if count < 0 {
            return Err(Error::Data(format!("a COPY row of {count} fields")));
        }
        // The row's length, when all of it is here.
        let mut at = 2usize;
        for _ in 0..count {
            if self.buf.len() < at + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes(self.buf[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            if len > 0 {
                at += len as usize;
            }
        }
        if self.buf.len() < at {
            return Ok(None);
        }
        Ok(Some(Row {
            bytes: self.buf.split_to(at).freeze(),
            count: count as usize,
        }))
    }
}

/// Runs `sql`, a `COPY … TO STDOUT (FORMAT binary)`, decoding its rows as `columns` and
/// handing each batch of up to `batch_size` rows to `each`.
pub async fn copy_batches(
    client: &tokio_postgres::Client,
    sql: &str,
    columns: &[Column],
    special: SpecialValues,
    batch_size: usize,
    mut each: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let stream = client
        .copy_out(sql)
        .await
        .what(|| "starting the COPY".into())?;
    let mut stream = std::pin::pin!(stream);
    let mut parser = Parser::default();
    let mut rows = Rows::new(columns, batch_size.min(65_536), special);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.what(|| "reading the COPY".into())?;
        parser.feed(&chunk);
        while let Some(row) = parser.next_row()? {
            let fields = row.fields();
            // A query without columns reads `1` for each row.
            rows.push(&fields[..columns.len().min(fields.len())])?;
            if rows.len() >= batch_size {
                each(rows.finish()?)?;
            }
        }
    }
    if !parser.ended() {
        return Err(Error::Data(
            "the server's COPY ended before its trailer".to_owned(),
        ));
    }
    if !rows.is_empty() {
        each(rows.finish()?)?;
    }
    Ok(())
}

/// One row of a binary COPY.
pub struct Row {
    bytes: Bytes,
    count: usize,
}

impl Row {
    /// The row's fields: each value's bytes, `None` for NULL.
    pub fn fields(&self) -> Vec<Option<&[u8]>> {
        let mut out = Vec::with_capacity(self.count);
        let mut at = 2usize;
        for _ in 0..self.count {
            let len = i32::from_be_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(&self.bytes[at..at + len as usize]));
                at += len as usize;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_cut_out_whatever_the_chunks() {
        let mut stream = SIGNATURE.to_vec();
        stream.extend(0u32.to_be_bytes());
        stream.extend(0u32.to_be_bytes());
        for (a, b) in [(Some(&b"xy"[..]), None), (Some(&b""[..]), Some(&b"z"[..]))] {
            stream.extend(2i16.to_be_bytes());
            for f in [a, b] {
                match f {
                    None => stream.extend((-1i32).to_be_bytes()),
                    Some(v) => {
                        stream.extend((v.len() as i32).to_be_bytes());
                        stream.extend(v);
                    }
                }
            }
        }
        stream.extend((-1i16).to_be_bytes());
        for size in [1, 3, 7, stream.len()] {
            let mut p = Parser::default();
            let mut rows = Vec::new();
            for chunk in stream.chunks(size) {
                p.feed(chunk);
                while let Some(row) = p.next_row().unwrap() {
                    rows.push(
                        row.fields()
                            .iter()
                            .map(|f| f.map(<[u8]>::to_vec))
                            .collect::<Vec<_>>(),
                    );
                }
            }
            assert!(p.ended(), "chunks of {size}");
            assert_eq!(
                rows,
                [
                    vec![Some(b"xy".to_vec()), None],
                    vec![Some(vec![]), Some(b"z".to_vec())]
                ]
            );
        }
    }
}
