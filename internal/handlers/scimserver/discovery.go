package scimserver

import (
	"net/http"
	"strings"
)

const (
	schemaSPConfig     = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	schemaResourceType = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	schemaSchema       = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

func (s *Server) serviceProviderConfig(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":          []string{schemaSPConfig},
		"documentationUri": "https://github.com/sentry-jml/sentry-jml/blob/main/docs/sources-okta-scim.md",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": s.o.MaxResults},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": true,
			"description": "A static bearer token (JML_SOURCE_SCIM_SECRET) in the Authorization header.",
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": s.baseURL(r) + "/ServiceProviderConfig"},
	})
	return nil
}

func (s *Server) resourceTypeList(r *http.Request) []map[string]any {
	base := s.baseURL(r)
	return []map[string]any{
		{
			"schemas": []string{schemaResourceType}, "id": "User", "name": "User", "endpoint": "/Users",
			"description": "User Account", "schema": SchemaUser,
			"schemaExtensions": []any{map[string]any{"schema": SchemaEnterpriseUser, "required": false}},
			"meta":             map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/User"},
		},
		{
			"schemas": []string{schemaResourceType}, "id": "Group", "name": "Group", "endpoint": "/Groups",
			"description": "Group", "schema": SchemaGroup,
			"meta": map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/Group"},
		},
	}
}

func (s *Server) resourceTypes(w http.ResponseWriter, r *http.Request) error {
	all := s.resourceTypeList(r)
	writeJSON(w, http.StatusOK, page(all, 1, len(all)))
	return nil
}

func (s *Server) resourceType(w http.ResponseWriter, r *http.Request) error {
	for _, rt := range s.resourceTypeList(r) {
		if strings.EqualFold(rt["id"].(string), r.PathValue("name")) {
			writeJSON(w, http.StatusOK, rt)
			return nil
		}
	}
	return &scimError{Status: http.StatusNotFound, Detail: "no such resource type"}
}

func attr(name, typ string, extra ...any) map[string]any {
	a := map[string]any{
		"name": name, "type": typ, "multiValued": false, "required": false, "caseExact": false,
		"mutability": "readWrite", "returned": "default", "uniqueness": "none",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		a[extra[i].(string)] = extra[i+1]
	}
	return a
}

func multi(name string, subs ...map[string]any) map[string]any {
	return attr(name, "complex", "multiValued", true, "subAttributes", subs)
}

func (s *Server) schemaList(r *http.Request) []map[string]any {
	base := s.baseURL(r)
	typed := []map[string]any{attr("value", "string"), attr("display", "string"), attr("type", "string"), attr("primary", "boolean")}
	user := map[string]any{
		"id": SchemaUser, "name": "User", "description": "User Account",
		"attributes": []any{
			attr("userName", "string", "required", true, "uniqueness", "server"),
			attr("name", "complex", "subAttributes", []any{attr("formatted", "string"), attr("familyName", "string"), attr("givenName", "string"), attr("middleName", "string")}),
			attr("displayName", "string"), attr("nickName", "string"), attr("title", "string"),
			attr("userType", "string"), attr("preferredLanguage", "string"), attr("locale", "string"), attr("timezone", "string"),
			attr("active", "boolean"),
			multi("emails", typed...), multi("phoneNumbers", typed...),
			attr("externalId", "string", "caseExact", true),
			attr("groups", "complex", "multiValued", true, "mutability", "readOnly",
				"subAttributes", []any{attr("value", "string", "mutability", "readOnly"), attr("display", "string", "mutability", "readOnly"), attr("$ref", "reference", "mutability", "readOnly")}),
		},
	}
	enterprise := map[string]any{
		"id": SchemaEnterpriseUser, "name": "EnterpriseUser", "description": "Enterprise User",
		"attributes": []any{
			attr("employeeNumber", "string"), attr("costCenter", "string"), attr("organization", "string"),
			attr("division", "string"), attr("department", "string"),
			attr("manager", "complex", "subAttributes", []any{attr("value", "string"), attr("displayName", "string", "mutability", "readOnly")}),
		},
	}
	group := map[string]any{
		"id": SchemaGroup, "name": "Group", "description": "Group",
		"attributes": []any{
			attr("displayName", "string", "required", true),
			attr("externalId", "string", "caseExact", true),
			multi("members", attr("value", "string", "mutability", "immutable"), attr("display", "string"), attr("type", "string"), attr("$ref", "reference", "mutability", "immutable")),
		},
	}
	out := []map[string]any{user, enterprise, group}
	for _, sc := range out {
		sc["schemas"] = []string{schemaSchema}
		sc["meta"] = map[string]any{"resourceType": "Schema", "location": base + "/Schemas/" + sc["id"].(string)}
	}
	return out
}

func (s *Server) schemas(w http.ResponseWriter, r *http.Request) error {
	all := s.schemaList(r)
	writeJSON(w, http.StatusOK, page(all, 1, len(all)))
	return nil
}

func (s *Server) schema(w http.ResponseWriter, r *http.Request) error {
	for _, sc := range s.schemaList(r) {
		if strings.EqualFold(sc["id"].(string), r.PathValue("urn")) {
			writeJSON(w, http.StatusOK, sc)
			return nil
		}
	}
	return &scimError{Status: http.StatusNotFound, Detail: "no such schema"}
}
