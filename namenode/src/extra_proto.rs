//! ClientProtocol messages the shared proto set does not define, declared here with the
//! field numbers of Hadoop's xattr.proto and encryption.proto. ringfs keeps no extended
//! attributes and no encryption zones, so these only ever carry empty answers.

/// XAttrProto (xattr.proto): namespace f1 (USER 0, TRUSTED 1, SECURITY 2, SYSTEM 3,
/// RAW 4), name f2, value f3.
#[derive(Clone, PartialEq, prost::Message)]
pub struct XAttrProto {
    #[prost(int32, required, tag = "1")]
    pub namespace: i32,
    #[prost(string, required, tag = "2")]
    pub name: String,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub value: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetXAttrsRequestProto {
    #[prost(string, required, tag = "1")]
    pub src: String,
    #[prost(message, repeated, tag = "2")]
    pub x_attrs: Vec<XAttrProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetXAttrsResponseProto {
    #[prost(message, repeated, tag = "1")]
    pub x_attrs: Vec<XAttrProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListXAttrsRequestProto {
    #[prost(string, required, tag = "1")]
    pub src: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListXAttrsResponseProto {
    #[prost(message, repeated, tag = "1")]
    pub x_attrs: Vec<XAttrProto>,
}

/// ListEncryptionZonesRequestProto: the id to continue after.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListEncryptionZonesRequestProto {
    #[prost(int64, required, tag = "1")]
    pub id: i64,
}

/// ListEncryptionZonesResponseProto: zones f1 (always none here), hasMore f2.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListEncryptionZonesResponseProto {
    #[prost(bool, required, tag = "2")]
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn empty_answers_carry_their_required_fields() {
        // hasMore is required: present even when false.
        assert_eq!(ListEncryptionZonesResponseProto { has_more: false }.encode_to_vec(), vec![0x10, 0x00]);
        let request = GetXAttrsRequestProto { src: "/a".into(), x_attrs: vec![] }.encode_to_vec();
        assert_eq!(GetXAttrsRequestProto::decode(&request[..]).unwrap().src, "/a");
    }
}
